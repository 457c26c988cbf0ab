import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Digest, digestHex, digestOf } from "../../lib/oci/digest.ts";
import { readIndex } from "../../lib/store/index-file.ts";
import { takeInventory } from "../../lib/store/inventory.ts";
import { Store } from "../../lib/store/store.ts";
import { formatBytes } from "../../lib/units.ts";
import { setLastUse } from "../helpers/age.ts";
import { CLI, runCli } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { startProxy, trickle } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const DAY_MS = 86_400_000;

let registry: RegistryHandle;
let spec: SampleImage;
let small: SampleImage;
let slow: SampleImage;

beforeAll(async () => {
  registry = await sharedRegistry();
  spec = await pushSampleImage(registry.url, `manage-${run}/spec`, "1", { format: "spec", romBytes: [2000] });
  small = await pushSampleImage(registry.url, `manage-${run}/small`, "1", { format: "kraftkit" });
  slow = await pushSampleImage(registry.url, `manage-${run}/slow`, "1", {
    format: "kraftkit",
    kernelBytes: 2 * 1024 * 1024,
  });
});
afterAll(() => registry.stop());

let dir: string;
let cacheDir: string;
let store: Store;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-manage-"));
  cacheDir = join(dir, "cache");
  store = new Store(cacheDir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const baseEnv = () => ({
  ...process.env,
  OCICACHE_DIR: cacheDir,
  XDG_CONFIG_HOME: join(dir, "config"),
  OCICACHE_AUTO_CLEAN_INTERVAL: "0",
});

const ocicache = (args: string[], env: Record<string, string> = {}) => runCli(args, { ...baseEnv(), ...env });

async function pull(ref: string, env: Record<string, string> = {}) {
  const ran = await ocicache(["pull", ref, "-o", join(dir, "out")], env);
  expect(ran.code).toBe(0);
  return ran;
}

function orphan(text: string, daysAgo: number): Digest {
  store.init();
  const bytes = new TextEncoder().encode(text);
  const digest = digestOf(bytes);
  store.putBytes({ digest, size: bytes.length }, bytes);
  const when = new Date(Date.now() - daysAgo * DAY_MS);
  setLastUse(store.root, digest, when);
  return digest;
}

describe("ls, stats", () => {
  test("ls lists each cached reference with digest, platform, size and last use; --blobs every blob", async () => {
    await pull(spec.ref);
    await pull(small.ref);
    const refs = JSON.parse((await ocicache(["ls", "--json"])).stdout);
    expect(refs.map((r: { reference: string }) => r.reference).sort()).toEqual([small.ref, spec.ref].sort());
    const specRow = refs.find((r: { reference: string }) => r.reference === spec.ref);
    expect(specRow.digest).toBe(spec.indexDigest);
    expect(specRow.platforms).toEqual([{ os: "linux", architecture: host, plat: "qemu" }]);
    expect(specRow.bytes).toBeGreaterThan(spec.manifests[host].files.initrd.length);
    const text = await ocicache(["ls"]);
    expect(text.stdout.split("\n")[0]).toMatch(/^REFERENCE\s+DIGEST\s+PLATFORMS\s+SIZE\s+LAST USE$/);
    const blobs = JSON.parse((await ocicache(["ls", "--blobs", "--json"])).stdout);
    expect(blobs.length).toBe(readdirSync(join(cacheDir, "blobs", "sha256")).length);
    expect(blobs.filter((b: { references: string[] }) => b.references.length !== 1)).toEqual([]);
  });

  test("ls: a tag and its digest form are one row, names are cut to fit COLUMNS, an empty cache says so", async () => {
    expect((await ocicache(["ls"])).stdout).toBe(`no cache at ${cacheDir}\n`);
    expect((await ocicache(["gc"])).code).toBe(0);
    expect((await ocicache(["ls"])).stdout).toBe("cache is empty\n");
    expect((await ocicache(["ls", "--blobs"])).stdout).toBe("cache is empty\n");
    await pull(spec.ref);
    await pull(`${spec.name}@${spec.indexDigest}`);
    expect(JSON.parse((await ocicache(["ls", "--json"])).stdout)).toHaveLength(2);
    const lines = (await ocicache(["ls"])).stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toStartWith(`${spec.ref}  `);
    expect(lines[1]).toContain(spec.indexDigest.slice(7, 19));
    const width = lines[1]!.length - (spec.ref.length - 30);
    const narrow = (await ocicache(["ls"], { COLUMNS: String(width) })).stdout.trimEnd().split("\n");
    expect(narrow.map((line) => line.length <= width)).toEqual([true, true]);
    // The host is cut first: the repository and the tag stay.
    expect(narrow[1]).toMatch(new RegExp(`^[0-9.:]+…/manage-${run}/spec:1  `));
    orphan("alone", 0);
    await ocicache(["rm", spec.ref, `${spec.name}@${spec.indexDigest}`]);
    expect((await ocicache(["ls"])).stdout).toBe("no references cached (1 blobs without one: ocicache ls --blobs)\n");
  });

  test("stats counts references, blobs and bytes, and the bytes over the limits", async () => {
    await pull(small.ref);
    orphan("old", 40);
    const stats = JSON.parse((await ocicache(["stats", "--json", "--max-size", "1KB"])).stdout);
    expect(stats.referenceCount).toBe(1);
    expect(stats.blobCount).toBe(readdirSync(join(cacheDir, "blobs", "sha256")).length);
    expect(stats.bytes).toBeGreaterThan(small.manifests[host].files.kernel.length);
    expect(stats.overMaxSizeBytes).toBe(stats.bytes - 1000);
    expect(stats.overMaxAgeBytes).toBe(3);
    expect((await ocicache(["du"])).stdout).toContain("references  1");
  });
});

describe("--json", () => {
  /** Every key of a JSON value, with the value, at any depth. */
  function entries(value: unknown): Array<[string, unknown]> {
    if (Array.isArray(value)) return value.flatMap(entries);
    if (value === null || typeof value !== "object") return [];
    return Object.entries(value).flatMap(([key, inner]) => [[key, inner] as [string, unknown], ...entries(inner)]);
  }

  test("every command speaks one vocabulary: bytes, …At (ISO 8601), …Seconds, platforms", async () => {
    await pull(spec.ref);
    orphan("stale", 40);
    const outputs = await Promise.all(
      [
        ["pull", spec.ref, "--json"],
        ["ls", "--json"],
        ["ls", "--blobs", "--json"],
        ["stats", "--json"],
        ["verify", "--json"],
        ["gc", "--dry-run", "--max-age", "1d", "--json"],
        ["doctor", "--json", "--offline"],
      ].map(async (args) => JSON.parse((await ocicache(args)).stdout) as unknown),
    );
    outputs.push(JSON.parse((await ocicache(["rm", spec.ref, "--json"])).stdout));
    const all = outputs.flatMap(entries);
    const keys = new Set(all.map(([key]) => key));
    for (const banned of ["size", "lastUse", "lastUseMs", "durationMs", "maxSize", "maxAgeMs"])
      expect(keys.has(banned)).toBe(false);
    for (const [key, value] of all) {
      if (/Bytes$|^bytes$/.test(key)) expect(Number.isInteger(value)).toBe(true);
      if (key.endsWith("At") && value !== null) expect(new Date(value as string).toISOString()).toBe(value as string);
      if (key.endsWith("Seconds")) expect(typeof value).toBe("number");
      if (key === "digest" || key === "manifest") expect(value as string).toMatch(/^sha256:[0-9a-f]{64}$/);
      if (key === "platform") expect(Object.keys(value as object)).toContain("architecture");
    }
    for (const key of ["lastUsedAt", "durationSeconds", "maxAgeSeconds", "freedBytes", "bytes", "platform"])
      expect(keys.has(key)).toBe(true);
  });
});

describe("gc", () => {
  test("prints what it removed and the bytes freed; --dry-run removes nothing", async () => {
    await pull(small.ref);
    const old = orphan("unused for 40 days", 40);
    const dry = await ocicache(["gc", "--dry-run"]);
    expect(dry.stdout).toContain(`would remove ${old}`);
    expect(store.stat(old)).toBeDefined();
    const report = JSON.parse((await ocicache(["gc", "--json"])).stdout);
    expect(report.removed.map((r: { digest: string }) => r.digest)).toEqual([old]);
    expect(report.freedBytes).toBe(18);
    expect(store.stat(old)).toBeUndefined();
    expect(readIndex(cacheDir)).toHaveLength(1);
  });

  test("says what it kept over --max-size because it was used within the grace period", async () => {
    await pull(small.ref);
    const total = takeInventory(store).totalBytes;
    const ran = await ocicache(["gc", "--max-size", "1B", "--grace", "10m"]);
    expect(ran.code).toBe(0);
    expect(ran.stdout).toContain(
      `kept ${formatBytes(total)} used within the grace period (10m), over the size limit (1 B)`,
    );
    expect(JSON.parse((await ocicache(["gc", "--max-size", "1B", "--json"])).stdout).keptRecentBytes).toBe(total);
    expect(readIndex(cacheDir)).toHaveLength(1);
  });

  test("--max-age from the environment and --max-size from the config file", async () => {
    await pull(small.ref);
    const a = orphan("three days", 3);
    mkdirSync(join(dir, "config", "ocicache"), { recursive: true });
    writeFileSync(join(dir, "config", "ocicache", "config.json"), JSON.stringify({ maxSize: "1MB" }));
    const ran = await ocicache(["gc", "--json"], { OCICACHE_MAX_AGE: "2d" });
    expect(JSON.parse(ran.stdout).removed.map((r: { digest: string }) => r.digest)).toEqual([a]);
    const bad = await ocicache(["gc"], { OCICACHE_MAX_AGE: "2 days" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("OCICACHE_MAX_AGE");
  });

  test("a cleanup running while another process pulls removes nothing the pull needs", async () => {
    const proxy = startProxy(registry.url, async (request, forward) => {
      const response = await forward();
      if (request.method !== "GET" || !request.url.includes("/blobs/")) return response;
      return trickle(response, 128 * 1024, 15);
    });
    try {
      await pull(small.ref);
      const puller = ocicache(["pull", `${proxy.host}/manage-${run}/slow:1`, "-o", join(dir, "slow")]);
      for (let i = 0; i < 10; i++) {
        await Bun.sleep(40);
        expect((await ocicache(["gc", "--max-size", "0"])).code).toBe(0);
      }
      const pulled = await puller;
      expect(pulled.code).toBe(0);
      expect(readFileSync(join(dir, "slow", "kernel"))).toEqual(Buffer.from(slow.manifests[host].files.kernel));
      expect((await ocicache(["verify"])).code).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  test("a cleanup killed midway leaves the cache consistent and verify clean", async () => {
    await pull(small.ref);
    await pull(spec.ref);
    const blobs = join(cacheDir, "blobs", "sha256");
    const old = new Date(Date.now() - 40 * DAY_MS);
    for (let i = 0; i < 3000; i++) {
      const bytes = new TextEncoder().encode(`orphan ${i}`);
      const path = join(blobs, digestHex(digestOf(bytes)));
      writeFileSync(path, bytes);
      utimesSync(path, old, old);
    }
    for (const name of readdirSync(blobs)) setLastUse(cacheDir, `sha256:${name}` as Digest, old);
    const before = readdirSync(blobs).length;
    const proc = Bun.spawn(["bun", CLI, "gc"], { env: baseEnv(), stdout: "ignore", stderr: "ignore" });
    let left = before;
    const deadline = Date.now() + 20_000;
    while (left === before && Date.now() < deadline) left = readdirSync(blobs).length;
    proc.kill("SIGKILL");
    await proc.exited;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(before);
    for (const entry of readIndex(cacheDir)) expect(existsSync(store.blobPath(entry.digest))).toBe(true);
    const verify = JSON.parse((await ocicache(["verify", "--json"])).stdout);
    expect(verify.corrupt).toEqual([]);
    expect(verify.missing).toEqual([]);
    expect((await ocicache(["gc"])).code).toBe(0);
    expect(readdirSync(blobs)).toEqual([]);
  });
});

describe("verify, rm, prune", () => {
  test("verify finds a flipped byte (exit 4); --repair removes it; the next pull fetches it again", async () => {
    await pull(small.ref);
    const kernel = small.manifests[host].layers[0]!.digest as Digest;
    const path = store.blobPath(kernel);
    const bytes = readFileSync(path);
    bytes[7]! ^= 0x10;
    chmodSync(path, 0o644);
    writeFileSync(path, bytes);
    const found = await ocicache(["verify"]);
    expect(found.code).toBe(4);
    expect(found.stdout).toContain(`corrupt ${kernel}`);
    const repaired = await ocicache(["verify", "--repair"]);
    expect(repaired.code).toBe(0);
    expect(existsSync(path)).toBe(false);
    await pull(small.ref);
    expect(readFileSync(path)).toEqual(Buffer.from(small.manifests[host].files.kernel));
    expect((await ocicache(["verify"])).code).toBe(0);
  });

  test("rm removes a reference or a blob; prune --all empties the cache", async () => {
    await pull(small.ref);
    await pull(spec.ref);
    const rm = await ocicache(["rm", small.ref]);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toContain(`removed ${small.ref}`);
    expect(readIndex(cacheDir).map((e) => e.annotations["org.opencontainers.image.ref.name"])).toEqual([spec.ref]);
    const rom = spec.manifests[host].layers[1]!.digest as Digest;
    expect((await ocicache(["rm", rom])).code).toBe(0);
    expect(store.stat(rom)).toBeUndefined();
    expect((await ocicache(["rm", `${small.name}:1`])).code).toBe(3);
    expect((await ocicache(["prune"])).code).toBe(2);
    expect((await ocicache(["prune", "--all"])).code).toBe(0);
    expect(readdirSync(join(cacheDir, "blobs", "sha256"))).toEqual([]);
  });

  test("rm takes the digest prefix ls prints (7+ hex, sha256: optional); an ambiguous one is exit 2", async () => {
    await pull(small.ref);
    await pull(spec.ref);
    const row = (await ocicache(["ls"])).stdout.split("\n").find((line) => line.startsWith(small.ref))!;
    const short = row.split(/\s+/)[1]!;
    expect(short).toMatch(/^[0-9a-f]{12}$/);
    const rm = await ocicache(["rm", short]);
    expect([rm.code, rm.stderr]).toEqual([0, ""]);
    expect(rm.stdout).toContain(`removed ${small.ref}`);
    expect(readIndex(cacheDir).map((e) => e.annotations["org.opencontainers.image.ref.name"])).toEqual([spec.ref]);
    // Two blobs planted under names that share their first 8 hex digits.
    const planted = ["1", "2"].map((last) => `sha256:abcdef01${"0".repeat(55)}${last}` as Digest);
    for (const digest of planted) writeFileSync(store.blobPath(digest), digest);
    const ambiguous = await ocicache(["rm", "sha256:abcdef0"]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain(`it is the start of ${planted.join(", ")}`);
    expect(planted.every((digest) => existsSync(store.blobPath(digest)))).toBe(true);
    expect((await ocicache(["rm", "abcdef0100"])).code).toBe(2);
    expect((await ocicache(["rm", planted[1]!.slice(7)])).code).toBe(0);
    expect(existsSync(store.blobPath(planted[1]!))).toBe(false);
    expect((await ocicache(["rm", "0123456"])).code).toBe(3);
  });
});

describe("automatic cleanup after a pull that fetched something", () => {
  test("runs at most once per interval, and never when the interval is 0", async () => {
    const first = orphan("first", 40);
    await pull(small.ref, { OCICACHE_AUTO_CLEAN_INTERVAL: "0" });
    expect(store.stat(first)).toBeDefined();
    await pull(spec.ref, { OCICACHE_AUTO_CLEAN_INTERVAL: "1h" });
    expect(store.stat(first)).toBeUndefined();
    expect(existsSync(join(cacheDir, "tmp", "gc.stamp"))).toBe(true);
    const second = orphan("second", 40);
    await pull(slow.ref, { OCICACHE_AUTO_CLEAN_INTERVAL: "1h" });
    expect(store.stat(second)).toBeDefined();
  });
});

describe("the cache is an OCI image layout", () => {
  test("skopeo inspects and copies a reference out of it", async () => {
    await pull(spec.ref);
    const inspect = Bun.spawnSync(["skopeo", "inspect", "--raw", `oci:${cacheDir}:${spec.ref}`]);
    expect(inspect.exitCode).toBe(0);
    expect(digestOf(inspect.stdout.toString()) as string).toBe(spec.indexDigest);
    const out = join(dir, "copied");
    const copy = Bun.spawnSync(["skopeo", "copy", `oci:${cacheDir}:${spec.ref}`, `dir:${out}`]);
    expect(copy.exitCode).toBe(0);
    const tar = spec.manifests[host].layers[0]!.digest as Digest;
    expect(readFileSync(join(out, digestHex(tar)))).toEqual(readFileSync(store.blobPath(tar)));
  });
});

describe("index.json under concurrent pulls", () => {
  test("six processes pulling six references into one cache leave all six in index.json", async () => {
    const refs = [spec, small, slow].flatMap((image) => [image.ref, `${image.name}@${image.indexDigest}`]);
    const results = await Promise.all(refs.map((ref, i) => ocicache(["pull", ref, "-o", join(dir, `out${i}`)])));
    expect(results.map((r) => r.code)).toEqual(refs.map(() => 0));
    expect(
      readIndex(cacheDir)
        .map((e) => e.annotations["org.opencontainers.image.ref.name"])
        .sort(),
    ).toEqual([...refs].sort());
    expect(readdirSync(join(cacheDir, "tmp")).filter((f) => f !== "gc.stamp")).toEqual([]);
  });
});

describe("the warm path stays light", () => {
  test("a cached path and pull load neither hono nor zod", async () => {
    await pull(spec.ref);
    const pinned = `${spec.name}@${spec.indexDigest}`;
    const script = `
      import { main } from ${JSON.stringify(join(import.meta.dir, "..", "..", "lib", "cli", "main.ts"))};
      const path = await main(["path", ${JSON.stringify(pinned)}, "--role", "kernel"]);
      const code = path + await main(["pull", ${JSON.stringify(pinned)}, "-o", ${JSON.stringify(join(dir, "warm"))}]);
      const loaded = Object.keys(require.cache).filter((k) => /node_modules\\/(hono|zod)\\//.test(k));
      console.error(JSON.stringify({ code, loaded }));`;
    writeFileSync(join(dir, "warm.ts"), script);
    const proc = Bun.spawn(["bun", join(dir, "warm.ts")], { env: baseEnv(), stdout: "ignore", stderr: "pipe" });
    const stderr = await new Response(proc.stderr).text();
    expect(await proc.exited).toBe(0);
    expect(JSON.parse(stderr.trim().split("\n").at(-1)!)).toEqual({ code: 0, loaded: [] });
  });
});
