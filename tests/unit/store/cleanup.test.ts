import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Digest, digestOf } from "../../../lib/oci/digest.ts";
import { parseReference } from "../../../lib/oci/reference.ts";
import { Cache } from "../../../lib/pull/cache.ts";
import { pullImage } from "../../../lib/pull/pull.ts";
import { autoClean, collectGarbage } from "../../../lib/store/cleanup.ts";
import { readIndex } from "../../../lib/store/index-file.ts";
import { takeInventory } from "../../../lib/store/inventory.ts";
import { pruneAll, removeTargets } from "../../../lib/store/remove.ts";
import { Store } from "../../../lib/store/store.ts";
import { setLastUse } from "../../helpers/age.ts";
import { HOST_ARCH as host, RUN_ID as run } from "../../helpers/env.ts";
import { pushBlob, pushManifest, pushSampleImage, type SampleImage } from "../../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../../helpers/registry.ts";

const DAY_MS = 86_400_000;

let registry: RegistryHandle;
let images: SampleImage[];
let sharing: { ref: string; kernel: string };

beforeAll(async () => {
  registry = await sharedRegistry();
  images = [];
  for (const name of ["one", "two", "three"]) {
    images.push(
      await pushSampleImage(registry.url, `gc-${run}/${name}`, "1", {
        format: "kraftkit",
        kernelBytes: 100_000,
        initrdBytes: 100_000,
      }),
    );
  }
  // An image that shares its kernel layer with images[0].
  const repo = `gc-${run}/one`;
  const layers = images[0]!.manifests[host].layers;
  const initrd = new Uint8Array(50_000).map(() => Math.floor(Math.random() * 256));
  const initrdDigest = await pushBlob(registry.url, repo, initrd);
  const config = JSON.stringify({ architecture: host, os: "linux" });
  const configDigest = await pushBlob(registry.url, repo, new TextEncoder().encode(config));
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: [layers[0], { mediaType: "application/vnd.unikraft.initrd.v1", digest: initrdDigest, size: initrd.length }],
  });
  await pushManifest(registry.url, repo, "shared", "application/vnd.oci.image.manifest.v1+json", manifest);
  sharing = { ref: `${registry.host}/${repo}:shared`, kernel: layers[0]!.digest };
});
afterAll(() => registry.stop());

let dir: string;
let store: Store;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-gc-"));
  store = new Store(join(dir, "cache"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function pull(ref: string, offline = false) {
  return pullImage(new Cache({ dir: store.root, offline }), parseReference(ref), { outDir: join(dir, "out") });
}

/** Set the last use of every blob of a cached reference. */
function age(name: string, daysAgo: number): void {
  const unit = takeInventory(store).units.find((u) => u.name === name)!;
  const when = new Date(Date.now() - daysAgo * DAY_MS);
  for (const digest of unit.blobs) setLastUse(store.root, digest, when);
}

const names = () => readIndex(store.root).map((e) => e.annotations["org.opencontainers.image.ref.name"]);
const policy = { maxAgeMs: 30 * DAY_MS, maxSizeBytes: 10 * 2 ** 30, graceMs: 10 * 60_000 };

describe("collectGarbage()", () => {
  test("removes references unused for longer than maxAge; the kept ones still pull with no network", async () => {
    await pull(images[0]!.ref);
    await pull(images[1]!.ref);
    age(images[0]!.ref, 40);
    age(images[1]!.ref, 20);
    const report = await collectGarbage(store, policy);
    expect(report.removed.map((r) => [r.name, r.reason])).toEqual([[images[0]!.ref, "age"]]);
    expect(names()).toEqual([images[1]!.ref]);
    for (const digest of images[0]!.manifests[host].layers.map((l) => l.digest as Digest))
      expect(store.stat(digest)).toBeUndefined();
    const again = await pull(images[1]!.ref, true);
    expect(again.hit).toBe(true);
    expect(report.steps.map((s) => s.name)).toEqual([
      "remove stale temp files",
      "expire by age",
      "remove derived files",
      "evict by size",
      "rewrite the index and delete",
    ]);
  });

  test("evicts the least recently used while over maxSize, and never what is within grace", async () => {
    for (const image of images) await pull(image.ref);
    age(images[0]!.ref, 3);
    age(images[1]!.ref, 1);
    age(images[2]!.ref, 2);
    const inventory = takeInventory(store);
    const newest = inventory.units.find((u) => u.name === images[1]!.ref)!;
    const report = await collectGarbage(store, { ...policy, maxSizeBytes: newest.size + 1000 });
    expect(report.removed.map((r) => r.name)).toEqual([images[0]!.ref, images[2]!.ref]);
    expect(report.removed.filter((r) => r.reason !== "size")).toEqual([]);
    expect(names()).toEqual([images[1]!.ref]);
    expect(report.remainingBytes).toBeLessThanOrEqual(newest.size + 1000);

    await pull(images[0]!.ref);
    const protectedReport = await collectGarbage(store, { ...policy, maxSizeBytes: 0 });
    expect(protectedReport.removed.map((r) => r.name)).toEqual([images[1]!.ref]);
    expect(names()).toEqual([images[0]!.ref]);
  });

  test("a blob shared by a kept and a removed reference survives", async () => {
    await pull(images[0]!.ref);
    await pull(sharing.ref);
    age(images[0]!.ref, 40);
    const shared = sharing.kernel as Digest;
    setLastUse(store.root, shared, new Date(Date.now() - 40 * DAY_MS));
    const report = await collectGarbage(store, policy);
    expect(report.removed.map((r) => r.name)).toEqual([images[0]!.ref]);
    expect(store.stat(shared)).toBeDefined();
    expect((await pull(sharing.ref, true)).hit).toBe(true);
  });

  test("a dry run reports and removes nothing", async () => {
    await pull(images[0]!.ref);
    age(images[0]!.ref, 40);
    const before = readdirSync(join(store.root, "blobs", "sha256")).sort();
    const report = await collectGarbage(store, { ...policy, dryRun: true });
    expect(report.removed.map((r) => r.name)).toEqual([images[0]!.ref]);
    expect(report.freedBytes).toBeGreaterThan(200_000);
    expect(readdirSync(join(store.root, "blobs", "sha256")).sort()).toEqual(before);
    expect(names()).toEqual([images[0]!.ref]);
  });

  test("a blob with no reference is a unit of its own", async () => {
    store.init();
    const bytes = new TextEncoder().encode("fetched by digest alone");
    const digest = digestOf(bytes);
    store.putBytes({ digest, size: bytes.length }, bytes);
    setLastUse(store.root, digest, new Date(Date.now() - 31 * DAY_MS));
    const report = await collectGarbage(store, policy);
    expect(report.removed).toMatchObject([{ kind: "blob", name: digest, bytes: bytes.length, reason: "age" }]);
    expect(store.stat(digest)).toBeUndefined();
  });

  test("removes stale temp files of dead owners, keeps live ones and live locks", async () => {
    store.init();
    const old = new Date(Date.now() - DAY_MS);
    const dead = join(store.tmpDir, `${"a".repeat(64)}.999999999.x1.part`);
    const live = join(store.tmpDir, `${"b".repeat(64)}.${process.pid}.x2.part`);
    const liveLock = join(store.tmpDir, "other.lock");
    for (const path of [dead, live]) {
      writeFileSync(path, "partial");
      utimesSync(path, old, old);
    }
    writeFileSync(liveLock, `${process.pid} ${Date.now()} token`);
    const report = await collectGarbage(store, policy);
    expect(report.steps[0]).toEqual({ name: "remove stale temp files", count: 1, bytes: 7 });
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(liveLock)).toBe(true);
  });
});

describe("autoClean()", () => {
  test("runs at most once per interval, and not at all when the interval is 0", async () => {
    store.init();
    const orphan = (text: string) => {
      const bytes = new TextEncoder().encode(text);
      const digest = digestOf(bytes);
      store.putBytes({ digest, size: bytes.length }, bytes);
      setLastUse(store.root, digest, new Date(Date.now() - 40 * DAY_MS));
      return digest;
    };
    const first = orphan("first");
    expect(await autoClean(store, policy, 0)).toBeUndefined();
    expect(store.stat(first)).toBeDefined();
    expect(existsSync(join(store.tmpDir, "gc.stamp"))).toBe(false);

    const report = await autoClean(store, policy, DAY_MS);
    expect(report?.removed.map((r) => r.digest)).toEqual([first]);
    const second = orphan("second");
    expect(await autoClean(store, policy, DAY_MS)).toBeUndefined();
    expect(store.stat(second)).toBeDefined();

    const stamp = join(store.tmpDir, "gc.stamp");
    utimesSync(stamp, new Date(Date.now() - 2 * DAY_MS), new Date(Date.now() - 2 * DAY_MS));
    expect((await autoClean(store, policy, DAY_MS))?.removed.map((r) => r.digest)).toEqual([second]);
    expect(Date.now() - statSync(stamp).mtimeMs).toBeLessThan(60_000);
  });
});

describe("removeTargets() and pruneAll()", () => {
  test("rm of a reference keeps the blobs another reference needs", async () => {
    await pull(images[0]!.ref);
    await pull(sharing.ref);
    const result = await removeTargets(store, [{ name: images[0]!.ref }]);
    expect(result.removed.map((r) => r.name)).toEqual([images[0]!.ref]);
    expect(store.stat(sharing.kernel as Digest)).toBeDefined();
    expect(names()).toEqual([sharing.ref]);
  });

  test("rm of what is not cached is not found", async () => {
    store.init();
    await expect(removeTargets(store, [{ name: "127.0.0.1:1/none:1" }])).rejects.toThrow(/is not in the cache/);
  });

  test("prune --all empties the cache and leaves a valid empty layout", async () => {
    await pull(images[0]!.ref);
    await pull(images[1]!.ref);
    const result = await pruneAll(store);
    expect(result.removed).toHaveLength(2);
    expect(readdirSync(join(store.root, "blobs", "sha256"))).toEqual([]);
    expect(names()).toEqual([]);
    expect(existsSync(join(store.root, "oci-layout"))).toBe(true);
  });
});
