/**
 * How long the commands that walk the whole cache take on a large one:
 * `bun scripts/bench-gc.ts [BLOBS]` (100,000 by default). Builds a cache of
 * references (an image manifest, its config and layers each) plus
 * unreferenced blobs, with last uses spread over 60 days, then times the
 * compiled binary (`bun run build`) as a user runs it: `ls`, `stats`, a dry
 * run and a real `gc` (30 days, then down to half the size), and `gc` again.
 * Target: each under 2 s.
 */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { digestOf } from "../lib/oci/digest.ts";
import { type IndexEntry, updateIndex } from "../lib/store/index-file.ts";
import { takeInventory } from "../lib/store/inventory.ts";
import { Store } from "../lib/store/store.ts";

const BLOBS = Number(Bun.argv[2] ?? 100_000);
const TARGET_MS = 2000;
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

const built = Bun.spawnSync(["bun", join(import.meta.dir, "build.ts")], { stdout: "ignore", stderr: "inherit" });
if (built.exitCode !== 0) throw new Error("bench-gc: building the binary failed");
const bin = join(import.meta.dir, "..", "dist", "ocicache");
const inventory = takeInventory(store);
const maxSize = String(Math.floor(inventory.totalBytes / 2));
const rows: string[] = [];
const time = (label: string, args: string[]) => {
  Bun.spawnSync(["sync"]);
  const started = performance.now();
  const ran = Bun.spawnSync([bin, ...args], { env: { ...process.env, OCICACHE_DIR: dir }, stdout: "pipe" });
  const ms = performance.now() - started;
  if (ran.exitCode !== 0) throw new Error(`${label} exited ${ran.exitCode}`);
  rows.push(`| ${label} | ${ms.toFixed(0)} | ${ms < TARGET_MS ? "yes" : "no"} |`);
  return ran.stdout.toString();
};
const policy = ["--max-age", "30d", "--max-size", maxSize, "--grace", "10m", "--json"];
time("ls", ["ls", "--json"]);
time("stats", ["stats", "--json"]);
const dry = JSON.parse(time("gc --dry-run", ["gc", "--dry-run", ...policy]));
const real = JSON.parse(time("gc", ["gc", ...policy]));
const again = JSON.parse(time("gc again (nothing to do)", ["gc", ...policy]));
// The floor of gc on this disk: unlinking as many files, just as old (written, then synced), with rm.
const removedFiles = inventory.blobs.size - takeInventory(store).blobs.size;
const floorDir = mkdtempSync(join(tmpdir(), "ocicache-bench-rm-"));
for (let i = 0; i < removedFiles; i++) writeFileSync(join(floorDir, `${i}`), "x");
Bun.spawnSync(["sync"]);
const rmStarted = performance.now();
Bun.spawnSync(["rm", "-rf", floorDir]);
const rmMs = performance.now() - rmStarted;
rows.push(`| rm -rf of ${removedFiles} files, as many as gc removed (floor) | ${rmMs.toFixed(0)} | |`);
console.log(`#### ${BLOBS} blobs, ${entries.length} references (compiled binary)\n`);
console.log(`| command | ms | under ${TARGET_MS / 1000} s |\n| --- | ---: | :---: |\n${rows.join("\n")}\n`);
console.log(
  `gc removed ${real.removed.length} units (the dry run: ${dry.removed.length}; again: ${again.removed.length}), ` +
    `freed ${real.freedBytes} of ${inventory.totalBytes} bytes`,
);
rmSync(dir, { recursive: true, force: true });
