/**
 * How long cleanup takes on a cache of 10,000 blobs:
 * `bun scripts/bench-gc.ts [BLOBS]`. Builds a cache of references (an image
 * manifest, its config and layers each) plus unreferenced blobs, with last
 * uses spread over 60 days, then times a dry run and a real `gc` (30 days,
 * then down to half the size).
 */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pruneCache } from "../lib/store/cleanup.ts";
import { digestOf } from "../lib/oci/digest.ts";
import { takeInventory } from "../lib/store/inventory.ts";
import { updateIndex, type IndexEntry } from "../lib/store/index-file.ts";
import { Store } from "../lib/store/store.ts";

const BLOBS = Number(Bun.argv[2] ?? 10_000);
const LAYERS_PER_IMAGE = 8;
const DAY_MS = 86_400_000;

const dir = mkdtempSync(join(tmpdir(), "ocicache-bench-gc-"));
const store = new Store(dir);
store.init();
const now = Date.now();
let written = 0;
const put = (bytes: Uint8Array | string, daysAgo: number) => {
  const digest = digestOf(bytes);
  const path = store.blobPath(digest);
  writeFileSync(path, bytes);
  const when = new Date(now - daysAgo * DAY_MS);
  utimesSync(path, when, when);
  written++;
  return { digest, size: typeof bytes === "string" ? Buffer.byteLength(bytes) : bytes.byteLength };
};

const entries: IndexEntry[] = [];
for (let i = 0; written + LAYERS_PER_IMAGE + 2 <= BLOBS * 0.9; i++) {
  const daysAgo = (i * 7) % 60;
  const config = put(JSON.stringify({ architecture: "amd64", os: "linux", n: i }), daysAgo);
  const layers = Array.from({ length: LAYERS_PER_IMAGE }, (_, j) =>
    put(
      new Uint8Array(4096).fill((i * 31 + j) % 256).map((v, k) => (v + k * (i + 1) * (j + 1)) % 256),
      daysAgo,
    ),
  );
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map((l) => ({ mediaType: "application/vnd.unikraft.rom.v1", ...l })),
  });
  const top = put(manifest, daysAgo);
  entries.push({
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: top.digest,
    size: top.size,
    annotations: { "org.opencontainers.image.ref.name": `bench.local/app${i}:1` },
  });
}
while (written < BLOBS) put(`orphan ${written}`, written % 60);
await updateIndex(dir, () => entries);

const time = async <T>(label: string, run: () => Promise<T> | T): Promise<T> => {
  const started = performance.now();
  const result = await run();
  console.log(`${label}: ${(performance.now() - started).toFixed(0)} ms`);
  return result;
};

console.log(`cache: ${BLOBS} blobs, ${entries.length} references, in ${dir}`);
const inventory = await time("inventory (ls)", () => takeInventory(store));
const policy = { maxAgeMs: 30 * DAY_MS, maxSizeBytes: Math.floor(inventory.totalBytes / 2), graceMs: 10 * 60_000 };
const dry = await time("gc --dry-run", () => pruneCache(store, { ...policy, dryRun: true }));
const real = await time("gc", () => pruneCache(store, policy));
console.log(
  `gc removed ${real.removed.length} units (dry run: ${dry.removed.length}), freed ${real.freedBytes} of ` +
    `${inventory.totalBytes} bytes`,
);
const after = await time("gc again (nothing to do)", () => pruneCache(store, policy));
console.log(`second gc removed ${after.removed.length} units`);
rmSync(dir, { recursive: true, force: true });
