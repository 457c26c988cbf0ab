/**
 * Sigstore bundles under a signature policy, against the real registry (the CNCF distribution registry 2.8, which
 * has no referrers API: bundles are found through the referrers tag schema), with bundles made by the sigstore
 * project's own `@sigstore/sign` over keys from openssl: accepted when one of the policy's keys signed a statement
 * naming the image, refused with each reason otherwise.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { makeKey } from "../helpers/cosign.ts";
import { RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { startProxy } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";
import { attachReferrer, BUNDLE_TYPE, pushBundle } from "../helpers/sigstore.ts";

const tmp = useTempDir("bundles");
let registry: RegistryHandle;
let good: { key: string; pub: string };
let other: { key: string; pub: string };
let attested: SampleImage;
let unnamed: SampleImage;
let refused: SampleImage;
let goodBundle: string;
const repoOf = (image: SampleImage) => image.name.slice(image.name.indexOf("/") + 1);

beforeAll(async () => {
  registry = await sharedRegistry();
  const keys = mkdtempSync(join(tmpdir(), "ocicache-keys-"));
  good = makeKey(keys, "good");
  other = makeKey(keys, "other");
  const push = (name: string) => pushSampleImage(registry.url, `bundle-${run}/${name}`, "1", { format: "kraftkit" });
  [attested, unnamed, refused] = await Promise.all([push("attested"), push("unnamed"), push("refused")]);
  // GitHub's build attestations name the repository in the statement's subject; cosign 3 names nothing.
  goodBundle = await pushBundle(registry.url, repoOf(attested), attested.indexDigest, good.key, {
    name: attested.name,
    predicateType: "https://slsa.dev/provenance/v1",
  });
  await pushBundle(registry.url, repoOf(unnamed), unnamed.indexDigest, good.key, { name: null });
  // Every way a bundle can fail to vouch for an image, attached to one image: each reason must be given.
  const certificate = join(keys, "cert.pem");
  const req = ["openssl", "req", "-new", "-x509", "-key", good.key, "-subj", "/CN=ocicache", "-days", "1"];
  expect(Bun.spawnSync([...req, "-out", certificate]).exitCode).toBe(0);
  const target = refused.indexDigest;
  const repo = repoOf(refused);
  const name = refused.name;
  await pushBundle(registry.url, repo, target, other.key, { name });
  await pushBundle(registry.url, repo, target, good.key, { name, statementDigest: unnamed.indexDigest });
  await pushBundle(registry.url, repo, target, good.key, { name: `${registry.host}/bundle-${run}/elsewhere` });
  await pushBundle(registry.url, repo, target, good.key, { name, certificate: readFileSync(certificate, "utf8") });
  await pushBundle(registry.url, repo, target, good.key, {
    name,
    tamper: (bundle) => {
      const envelope = bundle.dsseEnvelope as { payload: string };
      const statement = JSON.parse(Buffer.from(envelope.payload, "base64").toString());
      statement.subject[0].name = `${name}-forged`;
      envelope.payload = Buffer.from(JSON.stringify(statement)).toString("base64");
    },
  });
  await pushBundle(registry.url, repo, target, good.key, {
    name,
    tamper: (bundle) => {
      (bundle.dsseEnvelope as { signatures: unknown[] }).signatures = [];
    },
  });
  await pushBundle(registry.url, repo, target, good.key, { name, attachedTo: attested.indexDigest });
  // JSON that is not an object, as a bundle and as its statement: a reason each, never a crash.
  await attachReferrer(
    registry.url,
    repo,
    target,
    new TextEncoder().encode("null"),
    "https://sigstore.dev/cosign/sign/v1",
  );
  await pushBundle(registry.url, repo, target, good.key, {
    name,
    tamper: (bundle) => {
      (bundle.dsseEnvelope as { payload: string }).payload = Buffer.from("null").toString("base64");
    },
  });
  const big = new TextEncoder().encode(JSON.stringify({ padding: "x".repeat(300 * 1024) }));
  await attachReferrer(registry.url, repo, target, big, "https://sigstore.dev/cosign/sign/v1");
});

const ocicache = (args: string[], dir = "cache") => runCli(args, { OCICACHE_DIR: join(tmp.path, dir) });
function policy(signedIdentity?: object, pub = good.pub): string {
  const path = join(tmp.path, `policy-${Math.random()}.json`);
  const requirement = { type: "sigstoreSigned", keyPath: pub, ...(signedIdentity && { signedIdentity }) };
  writeFileSync(path, JSON.stringify({ default: [requirement] }));
  return path;
}

describe("a Sigstore bundle attached as a referrer", () => {
  test("signed by the policy's key for the repository: accepted by digest, or (matchRepository) by tag", async () => {
    const byDigest = await ocicache(["pull", `${attested.name}@${attested.indexDigest}`, "--policy", policy(), "-q"]);
    expect([byDigest.code, byDigest.stderr]).toEqual([0, ""]);
    const byTag = await ocicache(["pull", attested.ref, "--policy", policy({ type: "matchRepository" }), "-q"]);
    expect([byTag.code, byTag.stderr]).toEqual([0, ""]);
    // It names the repository only: asked for by tag, the default identity refuses it, as for a cosign payload.
    const exact = await ocicache(["pull", attested.ref, "--policy", policy()]);
    expect(exact.code).toBe(7);
    expect(exact.messages).toContain("which the policy's matchRepoDigestOrExact does not accept");
  });

  test("kept with the image: checked again offline from the cache; inspect lists it", async () => {
    const accept = policy({ type: "matchRepository" });
    expect((await ocicache(["pull", attested.ref, "--policy", accept, "-q"], "kept")).code).toBe(0);
    const offline = await ocicache(
      ["path", attested.ref, "--role", "kernel", "--policy", accept, "--offline", "-q"],
      "kept",
    );
    expect([offline.code, offline.stderr]).toEqual([0, ""]);
    const otherKey = policy({ type: "matchRepository" }, other.pub);
    const refusedOffline = await ocicache(
      ["path", attested.ref, "--role", "kernel", "--policy", otherKey, "--offline"],
      "kept",
    );
    expect(refusedOffline.code).toBe(7);
    expect(refusedOffline.messages).toContain("no signature by a key of the policy");
    const shown = JSON.parse((await ocicache(["inspect", attested.ref, "--json", "--policy", accept], "kept")).stdout);
    expect(shown.accepted).toBe(true);
    expect(shown.signatures).toEqual([
      {
        form: "bundle",
        tag: `sha256-${attested.indexDigest.slice(7)}`,
        manifest: goodBundle,
        predicateType: "https://slsa.dev/provenance/v1",
        payloads: [expect.objectContaining({ identity: attested.name, signedDigest: attested.indexDigest })],
        met: true,
      },
    ]);
  });

  test("lock --policy records the bundle; lock --check finds it still among the image's referrers", async () => {
    const lockFile = join(tmp.path, "bundle.lock");
    const accept = policy({ type: "matchRepository" });
    expect((await ocicache(["lock", attested.ref, "--policy", accept, "--lock-file", lockFile])).code).toBe(0);
    expect(JSON.parse(readFileSync(lockFile, "utf8")).references[attested.ref].signature).toBe(goodBundle);
    const check = await ocicache(["lock", "--check", "--lock-file", lockFile]);
    expect([check.code, check.stdout]).toEqual([0, expect.stringContaining(": 0 moved")]);
  });

  test("a registry with the referrers API is asked through it, not through the referrers tag", async () => {
    const image = await pushSampleImage(registry.url, `bundle-${run}/api`, "1", { format: "kraftkit" });
    let listing = "";
    const proxy = startProxy(registry.url, (request, forward) =>
      new URL(request.url).pathname === `/v2/${repoOf(image)}/referrers/${image.indexDigest}`
        ? new Response(listing, { headers: { "Content-Type": "application/vnd.oci.image.index.v1+json" } })
        : forward(),
    );
    try {
      const name = `${proxy.host}/${repoOf(image)}`;
      const manifest = await pushBundle(registry.url, repoOf(image), image.indexDigest, good.key, {
        name,
        listed: false,
      });
      listing = JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: manifest,
            size: 1,
            artifactType: BUNDLE_TYPE,
          },
        ],
      });
      const ran = await ocicache(["pull", `${name}:1`, "--policy", policy({ type: "matchRepository" }), "-q"]);
      expect([ran.code, ran.stderr]).toEqual([0, ""]);
      expect(proxy.count(`/referrers/${image.indexDigest}`, "GET")).toBe(1);
      const tag = `/manifests/sha256-${image.indexDigest.slice(7)}`;
      expect(proxy.requests.filter((r) => r.path.endsWith(tag))).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  test("a hostile referrers list (oversized, not JSON) refuses the image with its reason, exit 7", async () => {
    const image = await pushSampleImage(registry.url, `bundle-${run}/hostile-list`, "1", { format: "kraftkit" });
    let listing = "";
    const proxy = startProxy(registry.url, (request, forward) =>
      new URL(request.url).pathname.includes("/referrers/") ? new Response(listing) : forward(),
    );
    try {
      const pull = () =>
        ocicache(["pull", `${proxy.host}/${repoOf(image)}:1`, "--policy", policy({ type: "matchRepository" })]);
      listing = "x".repeat(5 * 1024 * 1024);
      const oversized = await pull();
      expect([oversized.code, oversized.messages]).toEqual([7, expect.stringContaining("its referrers list cannot")]);
      for (const junk of ["{not json", "null", '{"manifests":[null,7,"x"]}']) {
        listing = junk;
        const ran = await pull();
        expect([ran.code, ran.messages]).toEqual([7, expect.stringContaining("it has no signature")]);
      }
    } finally {
      await proxy.stop();
    }
  });

  test("a statement that names no image (cosign 3) cannot meet a signedIdentity: refused, saying why", async () => {
    const ran = await ocicache(["pull", `${unnamed.name}@${unnamed.indexDigest}`, "--policy", policy()]);
    expect(ran.code).toBe(7);
    expect(ran.messages).toContain("a bundle names no image (its statement's subject has no name)");
  });

  test("another key, digest or repository, keyless, tampered, malformed, another image's, oversized", async () => {
    const out = join(tmp.path, "refused-out");
    const ran = await ocicache([
      "pull",
      `${refused.name}@${refused.indexDigest}`,
      "--policy",
      policy({ type: "matchRepository" }),
      "-o",
      out,
    ]);
    expect(ran.code).toBe(7);
    for (const reason of [
      "no signature by a key of the policy",
      "a signature is for another digest",
      `names "${registry.host}/bundle-${run}/elsewhere", which the policy's matchRepository does not accept`,
      "a bundle is signed by a certificate (keyless), which ocicache does not verify",
      "a bundle is malformed",
      "a bundle is attached to another image",
      "a bundle is over 256 KiB",
      "a bundle is not a JSON object",
      "a bundle's statement is not a JSON object",
    ])
      expect(ran.messages).toContain(reason);
    expect(ran.messages.split("\n").filter(Boolean)).toHaveLength(1);
    // The progress says what each download is.
    expect(ran.stderr).toMatch(/fetching \S+:sha256-[0-9a-f]{64} bundle \(sha256:/);
    expect(existsSync(out)).toBe(false);
  });
});
