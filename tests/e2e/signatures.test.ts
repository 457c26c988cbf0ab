/**
 * The signature policy (`--policy`, containers-policy.json), against the real registry, with signatures made by
 * openssl in cosign's simple-signing form: an image is handed out only when the policy accepts it, and a refusal is
 * exit 7 with its reason, nothing written to the output directory.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { startContainerd } from "../helpers/containerd.ts";
import { makeKey, pushSignature } from "../helpers/cosign.ts";
import { HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const tmp = useTempDir("signatures");
let registry: RegistryHandle;
let keys: string;
let signed: SampleImage;
let unsigned: SampleImage;
let otherDigest: SampleImage;
let tagIdentity: SampleImage;
let good: { key: string; pub: string };
let other: { key: string; pub: string };
const repoOf = (image: SampleImage) => image.name.slice(image.name.indexOf("/") + 1);

beforeAll(async () => {
  registry = await sharedRegistry();
  keys = mkdtempSync(join(tmpdir(), "ocicache-keys-"));
  good = makeKey(keys, "good");
  other = makeKey(keys, "other");
  const push = (name: string) => pushSampleImage(registry.url, `sig-${run}/${name}`, "1", { format: "kraftkit" });
  [signed, unsigned, otherDigest, tagIdentity] = await Promise.all([
    push("signed"),
    push("unsigned"),
    push("moved"),
    push("tagged"),
  ]);
  // cosign signs the repository by default: an identity without a tag.
  await pushSignature(registry.url, repoOf(signed), signed.indexDigest, signed.name, good.key, keys);
  await pushSignature(
    registry.url,
    repoOf(otherDigest),
    otherDigest.indexDigest,
    otherDigest.name,
    good.key,
    keys,
    unsigned.indexDigest,
  );
  await pushSignature(registry.url, repoOf(tagIdentity), tagIdentity.indexDigest, tagIdentity.ref, good.key, keys);
});

const ocicache = (args: string[]) => runCli(args, { OCICACHE_DIR: join(tmp.path, "cache") });
function policy(requirement: object, scope?: string): string {
  const path = join(tmp.path, "policy.json");
  const body =
    scope === undefined
      ? { default: [requirement] }
      : { default: [{ type: "reject" }], transports: { docker: { [scope]: [requirement] } } };
  writeFileSync(path, JSON.stringify(body));
  return path;
}
const byKey = (pub: string, signedIdentity?: object) => ({
  type: "sigstoreSigned",
  keyPath: pub,
  ...(signedIdentity && { signedIdentity }),
});

describe("a sigstoreSigned policy", () => {
  test("accepts an image signed by its key for its repository, by digest or (matchRepository) by tag", async () => {
    const byDigest = await ocicache([
      "pull",
      `${signed.name}@${signed.indexDigest}`,
      "--policy",
      policy(byKey(good.pub)),
      "-o",
      join(tmp.path, "a"),
      "-q",
    ]);
    expect([byDigest.code, byDigest.stderr]).toEqual([0, ""]);
    expect(readFileSync(join(tmp.path, "a", "kernel"))).toEqual(Buffer.from(signed.manifests[host].files.kernel));
    const byTag = await ocicache([
      "pull",
      signed.ref,
      "--policy",
      policy(byKey(good.pub, { type: "matchRepository" })),
      "-q",
    ]);
    expect([byTag.code, byTag.stderr]).toEqual([0, ""]);
  });

  test("matchRepoDigestOrExact (the default) refuses a repository-only identity asked for by tag", async () => {
    const out = join(tmp.path, "refused");
    const ran = await ocicache(["pull", signed.ref, "--policy", policy(byKey(good.pub)), "-o", out]);
    expect(ran.code).toBe(7);
    expect(ran.messages).toContain(`which the policy's matchRepoDigestOrExact does not accept`);
    expect(existsSync(out)).toBe(false);
    const exact = await ocicache(["pull", tagIdentity.ref, "--policy", policy(byKey(good.pub)), "-q"]);
    expect([exact.code, exact.stderr]).toEqual([0, ""]);
  });

  test("refuses an unsigned image, another key's signature, a signature for another digest: exit 7", async () => {
    const unsignedRun = await ocicache([
      "path",
      unsigned.ref,
      "--role",
      "kernel",
      "--policy",
      policy(byKey(good.pub, { type: "matchRepository" })),
    ]);
    expect([unsignedRun.code, unsignedRun.stdout]).toEqual([7, ""]);
    expect(unsignedRun.messages).toContain("it has no signature");
    const wrongKey = await ocicache([
      "cat",
      signed.ref,
      "--role",
      "kernel",
      "--policy",
      policy(byKey(other.pub, { type: "matchRepository" })),
    ]);
    expect([wrongKey.code, wrongKey.bytes.length]).toEqual([7, 0]);
    expect(wrongKey.messages).toContain("no signature by a key of the policy");
    const moved = await ocicache([
      "pull",
      otherDigest.ref,
      "--policy",
      policy(byKey(good.pub, { type: "matchRepository" })),
    ]);
    expect(moved.code).toBe(7);
    expect(moved.messages).toContain("a signature is for another digest");
  });

  test("a hostile signature manifest: too many payloads, one oversized, one not its bytes: exit 7", async () => {
    type Layers = Array<Record<string, unknown>>;
    const cases: Array<[string, (layers: Layers) => Layers, string]> = [
      ["many", (layers) => Array(17).fill(layers[0]), "its signature manifest has 17 payloads"],
      ["huge", (layers) => [{ ...layers[0], size: 65 * 1024 }], "a payload is over 64 KiB"],
      ["short", (layers) => [{ ...layers[0], size: 10 }], "a payload is not the blob its descriptor names"],
    ];
    for (const [name, alter, reason] of cases) {
      const image = await pushSampleImage(registry.url, `sig-${run}/${name}`, "1", { format: "kraftkit" });
      await pushSignature(registry.url, repoOf(image), image.indexDigest, image.name, good.key, keys, undefined, alter);
      const ran = await ocicache(["pull", image.ref, "--policy", policy(byKey(good.pub, { type: "matchRepository" }))]);
      expect([ran.code, ran.messages.trim()]).toEqual([7, expect.stringContaining(reason)]);
      expect(ran.messages.trim().split("\n")).toHaveLength(1);
    }
  });

  test("the signatures that met the policy are kept with the image: offline and warm, no request", async () => {
    const accept = policy(byKey(good.pub, { type: "matchRepository" }));
    // The image cached, its signature never looked at: offline, refused (not "not found").
    expect((await ocicache(["pull", signed.ref, "-q"])).code).toBe(0);
    const never = await ocicache(["pull", signed.ref, "--policy", accept, "--offline"]);
    expect(never.code).toBe(7);
    expect(never.messages).toContain("no signature of it is cached");
    expect((await ocicache(["pull", signed.ref, "--policy", accept, "-q"])).code).toBe(0);
    const offline = await ocicache(["path", signed.ref, "--role", "kernel", "--policy", accept, "--offline", "-q"]);
    expect([offline.code, offline.stderr]).toEqual([0, ""]);
    // Kept as the image's own blobs: cleanup takes them with it, never before; another key still refuses offline.
    const blobs = JSON.parse((await ocicache(["ls", "--blobs", "--json"])).stdout) as Array<{ references: string[] }>;
    expect(blobs.filter((b) => b.references.length === 0)).toEqual([]);
    const wrong = policy(byKey(other.pub, { type: "matchRepository" }));
    const refused = await ocicache(["path", signed.ref, "--role", "kernel", "--policy", wrong, "--offline"]);
    expect(refused.code).toBe(7);
    expect(refused.messages).toContain("no signature by a key of the policy");
  });

  test("--verify asks the registry again: a signature replaced there no longer passes from the cache", async () => {
    const image = await pushSampleImage(registry.url, `sig-${run}/resigned`, "1", { format: "kraftkit" });
    await pushSignature(registry.url, repoOf(image), image.indexDigest, image.name, good.key, keys);
    const accept = policy(byKey(good.pub, { type: "matchRepository" }));
    const path = ["path", image.ref, "--role", "kernel", "--policy", accept];
    const first = await ocicache(path);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/fetching \S+:sha256-[0-9a-f]{64}\.sig signature \(sha256:/);
    // Signed over by another key: the kept signature still passes, until --verify asks the registry.
    await pushSignature(registry.url, repoOf(image), image.indexDigest, image.name, other.key, keys);
    expect((await ocicache(path)).code).toBe(0);
    const verified = await ocicache([...path, "--verify"]);
    expect([verified.code, verified.stdout]).toEqual([7, ""]);
    expect(verified.messages).toContain("no signature by a key of the policy");
  });

  test("inspect lists an image's signatures, and with --policy whether the policy accepts them", async () => {
    type Shown = {
      signatures: Array<{ form: string; tag: string; manifest: string; met?: boolean; payloads: object[] }>;
      accepted?: boolean;
      reason?: string;
    };
    const inspect = async (args: string[]) =>
      JSON.parse((await ocicache(["inspect", "--json", ...args])).stdout) as Shown;
    const plain = await inspect([signed.ref]);
    expect(plain.signatures).toHaveLength(1);
    expect(plain.signatures[0]).toMatchObject({
      form: "simple-signing",
      tag: `sha256-${signed.indexDigest.slice(7)}.sig`,
    });
    expect(plain.signatures[0]!.payloads).toEqual([
      expect.objectContaining({ identity: signed.name, signedDigest: signed.indexDigest }),
    ]);
    expect([plain.accepted, plain.signatures[0]!.met]).toEqual([undefined, undefined]);
    const accepted = await inspect([signed.ref, "--policy", policy(byKey(good.pub, { type: "matchRepository" }))]);
    expect([accepted.accepted, accepted.signatures[0]!.met]).toEqual([true, true]);
    const refused = await inspect([signed.ref, "--policy", policy(byKey(other.pub, { type: "matchRepository" }))]);
    expect([refused.accepted, refused.signatures[0]!.met]).toEqual([false, false]);
    expect(refused.reason).toContain("no signature by a key of the policy");
    const text = await ocicache(["inspect", signed.ref, "--policy", policy(byKey(other.pub))]);
    expect(text.stdout).toContain(`signature  simple signing  sha256-${signed.indexDigest.slice(7, 19)}`);
    expect(text.stdout).toMatch(/\npolicy {2}refuses it: .*no signature by a key of the policy/);
    expect((await inspect([unsigned.ref])).signatures).toEqual([]);
    expect((await ocicache(["inspect", unsigned.ref])).stdout).toContain("\nsignatures  none\n");
  });

  test("lock --policy records the signature that met it; lock --check reports another in its place", async () => {
    const lockFile = join(tmp.path, "ocicache.lock");
    const accept = policy(byKey(good.pub, { type: "matchRepository" }));
    expect((await ocicache(["lock", tagIdentity.ref, "--policy", accept, "--lock-file", lockFile])).code).toBe(0);
    const sigTag = `sha256-${tagIdentity.indexDigest.slice(7)}.sig`;
    const head = await fetch(`${registry.url}/v2/${repoOf(tagIdentity)}/manifests/${sigTag}`, {
      method: "HEAD",
      headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    const signature = head.headers.get("docker-content-digest");
    const locked = JSON.parse(readFileSync(lockFile, "utf8")).references[tagIdentity.ref];
    expect(locked.signature).toBe(signature);
    expect((await ocicache(["lock", "--check", "--lock-file", lockFile])).code).toBe(0);
    // Signed again (another payload, another manifest under the same tag): the lock no longer holds.
    await pushSignature(registry.url, repoOf(tagIdentity), tagIdentity.indexDigest, tagIdentity.name, good.key, keys);
    const check = await ocicache(["lock", "--check", "--lock-file", lockFile]);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(`moved ${tagIdentity.ref}: its signature ${signature} -> sha256:`);
    // With --policy, each locked digest must still be accepted: by the registry's signatures, or offline the kept ones.
    const checkWith = (pub: string, ...more: string[]) =>
      ocicache(["lock", "--check", "--lock-file", lockFile, "--policy", policy(byKey(pub)), ...more]);
    const refused = await checkWith(other.pub);
    expect(refused.code).toBe(7);
    expect(refused.stdout).toContain(`refused ${tagIdentity.ref}: Cannot accept "${tagIdentity.ref}": no signature by`);
    const offline = await checkWith(good.pub, "--offline");
    expect([offline.code, offline.stdout]).toEqual([0, expect.not.stringContaining("refused")]);
    expect((await checkWith(other.pub, "--offline")).code).toBe(7);
  });

  test("serve --policy: a refused manifest is 403 DENIED to fetch, podman, ctr; an accepted one served", async () => {
    const accept = policy(byKey(good.pub, { type: "matchRepository" }));
    const serve = await startServe(join(tmp.path, "serve"), registry.host, ["--policy", accept]);
    const manifest = (repo: string, reference: string) =>
      fetch(`http://${serve.host}/v2/${repo}/manifests/${reference}`, {
        headers: { Accept: "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json" },
      });
    try {
      const index = await manifest(repoOf(signed), "1");
      expect([index.status, index.headers.get("docker-content-digest")]).toEqual([200, signed.indexDigest]);
      const platform = await manifest(repoOf(signed), signed.manifests[host].digest);
      expect(platform.status).toBe(200);
      expect(platform.headers.get("docker-content-digest")).toBe(signed.manifests[host].digest);
      expect(new Bun.CryptoHasher("sha256").update(await platform.arrayBuffer()).digest("hex")).toBe(
        signed.manifests[host].digest.slice(7),
      );
      for (const reference of ["1", unsigned.indexDigest, unsigned.manifests[host].digest]) {
        const refused = await manifest(repoOf(unsigned), reference);
        expect(refused.status).toBe(403);
        const body = (await refused.json()) as { errors: Array<{ code: string; message: string }> };
        expect(body.errors[0]!.code).toBe("DENIED");
        expect(body.errors[0]!.message).toContain("it has no signature");
      }
      const metrics = await (await fetch(`http://${serve.host}/metrics`)).text();
      expect(metrics).toContain("\nocicache_mirror_policy_refused_total 3\n");
      // The real clients, asking the mirror as their registry, say why.
      const unsignedThere = `${serve.host}/${repoOf(unsigned)}:1`;
      if (Bun.which("podman") !== null) {
        const store = join(tmp.path, "podman");
        const podman = ["podman", "--root", join(store, "graph"), "--runroot", join(store, "run")];
        const pulled = Bun.spawnSync([
          ...podman,
          "--storage-driver",
          "vfs",
          "pull",
          "--tls-verify=false",
          unsignedThere,
        ]);
        expect(pulled.exitCode).not.toBe(0);
        expect(pulled.stderr.toString()).toContain(`denied: Cannot accept "${unsigned.ref}": it has no signature`);
      }
      if (Bun.which("containerd") !== null && Bun.which("ctr") !== null) {
        const containerd = await startContainerd(join(tmp.path, "containerd"));
        try {
          const fetched = containerd.ctr("content", "fetch", "--plain-http", unsignedThere);
          expect(fetched.exitCode).not.toBe(0);
          expect(fetched.stderr).toContain("403 Forbidden");
        } finally {
          await containerd.stop();
        }
      }
    } finally {
      await serve.stop();
    }
  });

  test("scopes: the most specific wins; reject and insecureAcceptAnything mean what they say", async () => {
    const scoped = policy({ type: "insecureAcceptAnything" }, `${registry.host}/sig-${run}/unsigned`);
    expect((await ocicache(["pull", unsigned.ref, "--policy", scoped, "-q"])).code).toBe(0);
    const rejected = await ocicache(["pull", signed.ref, "--policy", scoped]);
    expect(rejected.code).toBe(7);
    expect(rejected.messages).toContain("the policy rejects it");
    const blob = await ocicache([
      "path",
      `${signed.name}@${signed.manifests[host].layers[0]!.digest}`,
      "--policy",
      scoped,
    ]);
    expect(blob.code).toBe(7);
  });

  test("a policy ocicache does not implement anywhere is exit 2 naming it; no --policy, no change", async () => {
    const path = join(tmp.path, "gpg.json");
    writeFileSync(
      path,
      JSON.stringify({
        default: [{ type: "insecureAcceptAnything" }],
        transports: { docker: { x: [{ type: "signedBy", keyType: "GPGKeys" }] } },
      }),
    );
    const gpg = await ocicache(["pull", unsigned.ref, "--policy", path]);
    expect(gpg.code).toBe(2);
    expect(gpg.messages).toContain('$.transports.docker["x"][0].type: "signedBy" is not implemented');
    expect((await ocicache(["pull", unsigned.ref, "-q"])).code).toBe(0);
  });
});
