import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushBlob, pushManifest, pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { startProxy } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const other = host === "amd64" ? "arm64" : "amd64";
const tmp = useTempDir("inspect");
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";
let registry: RegistryHandle;
let spec: SampleImage;
let kraft: SampleImage;

beforeAll(async () => {
  registry = await sharedRegistry();
  spec = await pushSampleImage(registry.url, `inspect-${run}/spec`, "1.25", { format: "spec", romBytes: [300] });
  kraft = await pushSampleImage(registry.url, `inspect-${run}/kraft`, "1", { format: "kraftkit" });
  for (const tag of ["2", "latest"])
    await pushSampleImage(registry.url, `inspect-${run}/kraft`, tag, { format: "kraftkit" });
});
afterAll(() => registry.stop());

const ocicache = (cache: string, args: string[], env: Record<string, string> = {}) =>
  runCli(args, { OCICACHE_DIR: join(tmp.path, cache), ...env });

interface Inspected {
  reference: string;
  digest: string;
  mediaType: string;
  manifests: Array<{
    digest: string;
    platform?: { os: string; architecture: string; plat?: string };
    files?: Array<{ role: string; name: string; digest?: string; bytes?: number; path?: string; cached: boolean }>;
  }>;
}

async function inspect(cache: string, ref: string, ...flags: string[]): Promise<Inspected> {
  const ran = await ocicache(cache, ["inspect", ref, "--json", ...flags]);
  expect(ran.code).toBe(0);
  return JSON.parse(ran.stdout);
}

describe("ocicache inspect", () => {
  test("the digest, the platforms with unikraft's plat, and each platform's files, sizes and digests", async () => {
    const found = await inspect("a", spec.ref);
    expect(found.digest).toBe(spec.indexDigest);
    expect(found.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    const mine = found.manifests.find((m) => m.platform?.architecture === host)!;
    expect(mine.digest).toBe(spec.manifests[host].digest);
    expect(mine.platform).toEqual({ os: "linux", architecture: host, plat: "qemu" });
    expect(mine.files!.map((f) => [f.role, f.name, f.cached])).toEqual([
      ["kernel", "kernel", false],
      ["initrd", "initrd", false],
      ["rom", "rom0", false],
    ]);
    // Files of the tar layer have no digest of their own until a pull takes them out; a ROM layer is its own file.
    expect(mine.files![0]!.path).toBe("unikraft/bin/kernel");
    expect(mine.files![2]!.bytes).toBe(300);
    expect(found.manifests.map((m) => m.platform?.architecture).sort()).toEqual(["amd64", "arm64"]);
    // Nothing was pulled: inspect records no reference (the manifests it read are kept, for a pull or --offline).
    expect((await ocicache("a", ["ls", "--json"])).stdout).toBe("[]\n");
  });

  test("after a pull the host's files are cached with their digests; offline it answers from the cache", async () => {
    expect((await ocicache("b", ["pull", kraft.ref, "-q"])).code).toBe(0);
    const found = await inspect("b", kraft.ref, "--offline");
    const mine = found.manifests.find((m) => m.platform?.architecture === host)!;
    const kernel = kraft.manifests[host].layers[0]!;
    expect(mine.files![0]).toEqual({
      role: "kernel",
      name: "kernel",
      layer: kernel.digest,
      digest: kernel.digest,
      bytes: kernel.size,
      cached: true,
    } as never);
    // The other platform's manifest was never fetched: offline, it is named but its files are unknown.
    expect(found.manifests.find((m) => m.platform?.architecture === other)!.files).toBeUndefined();
    const text = await ocicache("b", ["inspect", kraft.ref, "--offline"]);
    expect(text.stdout).toContain(`reference  ${kraft.ref}\n`);
    expect(text.stdout).toMatch(new RegExp(`qemu/${host}  ${kraft.manifests[host].digest}\\n  kernel `));
    expect(text.stdout).toContain(`  cached      ${kernel.digest}`);
    expect(text.stdout).toContain("(manifest not cached)");
    // At 80 columns every line fits: digests as ls gives them, the reference whole.
    const narrow = await ocicache("b", ["inspect", kraft.ref, "--offline"], { COLUMNS: "80" });
    const lines = narrow.stdout.trimEnd().split("\n");
    expect(lines.filter((line) => line.length > 80)).toEqual([]);
    expect(lines).toContain(`digest     ${kraft.indexDigest.slice(0, 19)}…`);
    expect(narrow.stdout).toContain(`  cached      ${kernel.digest.slice(0, 19)}…`);
  });

  test("a digest pinned to one platform's manifest; an unknown tag is exit 3", async () => {
    const found = await inspect("c", `${kraft.name}@${kraft.manifests[other].digest}`);
    expect(found.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(found.manifests).toHaveLength(1);
    expect(found.manifests[0]!.platform).toBeUndefined();
    expect(found.manifests[0]!.files!.map((f) => f.role)).toEqual(["kernel", "initrd"]);
    const missing = await ocicache("c", ["inspect", `${kraft.name}:nope`]);
    expect(missing.code).toBe(3);
  });
});

describe("ls after inspect", () => {
  test("lists only the platform that was pulled, not every platform inspect read a manifest of", async () => {
    expect((await ocicache("h", ["inspect", spec.ref])).code).toBe(0);
    expect((await ocicache("h", ["pull", spec.ref, "-q"])).code).toBe(0);
    const rows = JSON.parse((await ocicache("h", ["ls", "--json"])).stdout) as Array<{
      platforms: Array<{ architecture: string }>;
    }>;
    expect(rows.map((row) => row.platforms.map((p) => p.architecture))).toEqual([[host]]);
    const table = (await ocicache("h", ["ls"])).stdout;
    expect(table).toContain(host);
    expect(table).not.toContain(other);
  });
});

describe("inspect of an index with many children (finding 9)", () => {
  test("asks for at most 8 child manifests at once, and answers with every one in its order", async () => {
    const repo = `inspect-${run}/wide`;
    const config = new TextEncoder().encode("{}");
    const configDigest = await pushBlob(registry.url, repo, config);
    const children = [];
    for (let i = 0; i < 32; i++) {
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST,
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
        layers: [],
        annotations: { n: String(i) },
      });
      const digest = await pushManifest(registry.url, repo, `c${i}`, MANIFEST, body);
      children.push({
        mediaType: MANIFEST,
        digest,
        size: body.length,
        platform: { os: "linux", architecture: "amd64", variant: `v${i}` },
      });
    }
    const index = JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: children });
    await pushManifest(registry.url, repo, "wide", INDEX, index);
    let inFlight = 0;
    let most = 0;
    const slow = startProxy(registry.url, async (request, forward) => {
      if (!new URL(request.url).pathname.includes("/manifests/sha256:")) return forward();
      most = Math.max(most, ++inFlight);
      await Bun.sleep(30);
      try {
        return await forward();
      } finally {
        inFlight--;
      }
    });
    try {
      const found = await inspect("g", `${slow.host}/${repo}:wide`);
      expect(found.manifests.map((m) => m.digest)).toEqual(children.map((c) => c.digest));
      expect(slow.count("/manifests/sha256:")).toBe(32);
      expect(most).toBeLessThanOrEqual(8);
      expect(most).toBeGreaterThan(1);
    } finally {
      await slow.stop();
    }
  });
});

describe("ocicache tags", () => {
  test("lists the registry's tags one per line, sorted, following its pages; --json a list", async () => {
    const text = await ocicache("d", ["tags", kraft.name]);
    expect([text.code, text.stdout]).toEqual([0, "1\n2\nlatest\n"]);
    expect(JSON.parse((await ocicache("d", ["tags", kraft.name, "--json"])).stdout)).toEqual(["1", "2", "latest"]);
    // A registry that pages one tag at a time (the distribution spec's `n` and `last`, with a `Link` to the next page;
    // this registry version lists every tag at once): every page is followed.
    const paging = startProxy(registry.url, async (request, forward) => {
      const url = new URL(request.url);
      if (!url.pathname.endsWith("/tags/list")) return forward();
      const { name, tags } = (await (await forward()).json()) as { name: string; tags: string[] };
      const last = url.searchParams.get("last");
      const rest = tags.sort().filter((tag) => last === null || tag > last);
      const headers: Record<string, string> =
        rest.length > 1 ? { Link: `<${url.pathname}?n=1&last=${rest[0]}>; rel="next"` } : {};
      return Response.json({ name, tags: rest.slice(0, 1) }, { headers });
    });
    try {
      const paged = await ocicache("d", ["tags", `${paging.host}/inspect-${run}/kraft`]);
      expect(paged.stdout).toBe("1\n2\nlatest\n");
      expect(paging.count("/tags/list")).toBe(3);
    } finally {
      await paging.stop();
    }
  });

  test("offline, the tags the cache knows; a tag or an unknown repository is refused", async () => {
    expect((await ocicache("e", ["pull", `${kraft.name}:2`, "-q"])).code).toBe(0);
    expect((await ocicache("e", ["tags", kraft.name, "--offline"])).stdout).toBe("2\n");
    const tagged = await ocicache("e", ["tags", kraft.ref]);
    expect(tagged.code).toBe(2);
    expect(tagged.stderr).toContain("give a repository without a tag or digest");
    expect((await ocicache("e", ["tags", `${registry.host}/inspect-${run}/none`])).code).toBe(3);
    expect((await ocicache("e", ["tags", `${registry.host}/inspect-${run}/none`, "--offline"])).code).toBe(3);
  });

  test.each([
    ["few tags and padding, 4 MiB a page", 10, "its pages hold more than 16777216 bytes"],
    ["tags alone, 4 MiB a page", 300_000, "it has more than 100000 tags"],
  ])("a registry paging without end (%s) is refused within its bounds, exit 4 (finding 8)", async (_, count, said) => {
    let pages = 0;
    const endless = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request) {
        const url = new URL(request.url);
        if (!url.pathname.endsWith("/tags/list")) return new Response("{}");
        pages++;
        const tags = Array.from({ length: count }, (_, i) => `p${pages}-${String(i).padStart(6, "0")}`);
        const link = `<${url.pathname}?n=${count}&last=${tags.at(-1)}>; rel="next"`;
        const padding = "x".repeat(Math.max(0, 4 * 1024 * 1024 - 200 - count * 13));
        return Response.json({ name: "r", tags, padding }, { headers: { Link: link } });
      },
    });
    try {
      const ran = await ocicache("f", ["tags", `127.0.0.1:${endless.port}/r`]);
      expect(ran.stderr).toContain(said);
      expect(ran.code).toBe(4);
      expect(pages).toBeLessThanOrEqual(5);
    } finally {
      await endless.stop(true);
    }
  });
});
