/**
 * The benchmark: `bun run bench [--runs N] [--sizes small,medium,large] [--no-soak]` (5 runs by default), then
 * start-up and scale (`scripts/bench-startup.ts`), disk use per image (`scripts/bench-disk.ts`) and the mirror's
 * soak (`scripts/bench-mirror.ts`).
 *
 * Starts the real registry on 127.0.0.1, pushes kraftkit-style images of
 * three sizes (kernel + initrd: 1 + 4, 8 + 64, 16 + 512 MiB), and times,
 * interleaved (each round in a shuffled order, each command after a `sync`),
 * ocicache (`bun lib/cli/main.ts`, the CLI run from source, and the compiled
 * binary) against the floors (`curl -o` + `openssl dgst -sha256`, `cp`) and skopeo, with the
 * peak RSS of each from `/usr/bin/time`. Prints a Markdown table, the
 * targets of issue 6 marked met or not.
 */
import { randomFillSync } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashFile } from "../lib/oci/digest.ts";
import { startContainerd } from "../tests/helpers/containerd.ts";
import { pushBlob, pushBlobFile, pushManifest } from "../tests/helpers/images.ts";
import { startRegistry } from "../tests/helpers/registry.ts";

const MiB = 1024 * 1024;
const SIZES = { small: [1, 4], medium: [8, 64], large: [16, 512] } as const;
type SizeName = keyof typeof SIZES;

const arg = (name: string) => {
  const i = Bun.argv.indexOf(name);
  return i === -1 ? undefined : Bun.argv[i + 1];
};
const RUNS = Number(arg("--runs") ?? 5);
const chosen = (arg("--sizes") ?? "small,medium,large").split(",") as SizeName[];

const root = join(import.meta.dir, "..");
const CLI = join(root, "lib", "cli", "main.ts");
const BIN = join(root, "dist", "ocicache");
const work = mkdtempSync(join(tmpdir(), "ocicache-bench-"));
const arch = process.arch === "arm64" ? "arm64" : "amd64";

/** Whether this run measures peak RSS (under /usr/bin/time) instead of time. */
let measuringRss = false;
/** Directories the command being measured writes; removed right after it, so no run carries the last one's data. */
const scratch: string[] = [];

/** One command: its wall time from here, or (when measuring RSS) its peak RSS from /usr/bin/time. */
function measure(argv: string[], env: Record<string, string> = {}): number {
  // Each command starts with no dirty pages of the one before (writeback would be charged to whoever
  // comes next), and a moment for the disk to settle.
  Bun.spawnSync(["sync"]);
  Bun.sleepSync(200);
  const wrapped = measuringRss ? ["/usr/bin/time", "-f", "%M", ...argv] : argv;
  const started = performance.now();
  const result = Bun.spawnSync(wrapped, { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" });
  const ms = performance.now() - started;
  for (const path of scratch.splice(0)) rmSync(path, { recursive: true, force: true });
  const stderr = result.stderr.toString().trim().split("\n");
  if (result.exitCode !== 0)
    throw new Error(`${argv.join(" ")} exited ${result.exitCode}: ${stderr.slice(-3).join(" | ")}`);
  return measuringRss ? Number(stderr.at(-1)) : ms;
}

function randomFile(path: string, bytes: number): void {
  const fd = openSync(path, "w");
  const chunk = Buffer.allocUnsafe(8 * MiB);
  for (let left = bytes; left > 0; left -= chunk.length) {
    const n = Math.min(left, chunk.length);
    randomFillSync(chunk, 0, n);
    writeSync(fd, chunk, 0, n);
  }
  closeSync(fd);
}

interface Image {
  ref: string;
  pinned: string;
  blobUrls: string[];
  digests: string[];
  mib: number;
}

async function pushImage(url: string, size: SizeName): Promise<Image> {
  const [kernelMiB, initrdMiB] = SIZES[size];
  const repo = `bench/${size}`;
  const layers = [];
  for (const [name, mib, mediaType] of [
    ["kernel", kernelMiB, "application/vnd.unikraft.kernel.v1"],
    ["initrd", initrdMiB, "application/vnd.unikraft.initrd.v1"],
  ] as const) {
    const path = join(work, `${size}-${name}`);
    randomFile(path, mib * MiB);
    const { digest } = hashFile(path);
    await pushBlobFile(url, repo, path, digest);
    rmSync(path);
    layers.push({ mediaType, digest, size: mib * MiB });
  }
  const config = JSON.stringify({ architecture: arch, os: "linux" });
  const configDigest = await pushBlob(url, repo, new TextEncoder().encode(config));
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers,
  });
  const manifestDigest = await pushManifest(
    url,
    repo,
    `sha256:${new Bun.CryptoHasher("sha256").update(manifest).digest("hex")}`,
    "application/vnd.oci.image.manifest.v1+json",
    manifest,
  );
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: manifestDigest,
        size: manifest.length,
        platform: { os: "linux", architecture: arch },
      },
    ],
  });
  const indexDigest = await pushManifest(url, repo, "1", "application/vnd.oci.image.index.v1+json", index);
  const host = new URL(url).host;
  return {
    ref: `${host}/${repo}:1`,
    pinned: `${host}/${repo}@${indexDigest}`,
    blobUrls: layers.map((l) => `${url}/v2/${repo}/blobs/${l.digest}`),
    digests: [indexDigest, manifestDigest, configDigest, ...layers.map((l) => l.digest)],
    mib: kernelMiB + initrdMiB,
  };
}

type Scenario = { name: string; group: string; run: (i: number) => number };
type Ctr = (...args: string[]) => { exitCode: number; stderr: string };

/** The bare loop ocicache's memory is measured against: Bun's fetch, SHA-256 and a file writer, both blobs at once. */
const BARE_LOOP = `
await Promise.all(Bun.argv.slice(2).map(async (url, i) => {
  const response = await fetch(url);
  const hasher = new Bun.CryptoHasher("sha256");
  const writer = Bun.file(\`\${Bun.argv[1]}/\${i}\`).writer();
  for await (const chunk of response.body) { hasher.update(chunk); writer.write(chunk); }
  await writer.end();
  hasher.digest("hex");
}));
`;

function scenarios(image: Image, size: SizeName, containerd: { ctr: Ctr; argv: string[] }): Scenario[] {
  const { ctr, argv: CTR } = containerd;
  const dir = join(work, size);
  mkdirSync(dir, { recursive: true });
  const warmCache = join(dir, "warm-cache");
  const env = (cache: string) => ({
    OCICACHE_DIR: cache,
    OCICACHE_AUTO_CLEAN_INTERVAL: "0",
    XDG_CONFIG_HOME: join(work, "no-config"),
  });
  const fresh = (name: string) => {
    const path = join(dir, name);
    rmSync(path, { recursive: true, force: true });
    scratch.push(path);
    return path;
  };
  measure(["bun", CLI, "pull", image.ref, "-o", join(dir, "prime")], env(warmCache));
  measure(["bun", CLI, "pull", image.pinned, "-o", join(dir, "prime-pinned")], env(warmCache));
  const cached = ["kernel", "initrd"].map((role) => {
    const found = Bun.spawnSync(["bun", CLI, "path", image.pinned, "--role", role], {
      env: { ...process.env, ...env(warmCache) },
    });
    return found.stdout.toString().trim();
  });
  // This machine reclaims idle page cache, so "warm" means: the cached files were just read.
  const warm = (run: () => number) => () => {
    Bun.spawnSync(["cat", ...cached], { stdout: "ignore" });
    return run();
  };
  const skopeoWarm = join(dir, "skopeo-warm");
  measure(["skopeo", "copy", "-q", "--src-tls-verify=false", `docker://${image.ref}`, `oci:${skopeoWarm}:1`]);
  const cold =
    (cli: string[], extra: string[] = []) =>
    (i: number) => {
      const name = `${cli.length}-${extra.length}-${i}`;
      return measure(
        [...cli, "pull", image.ref, "-o", fresh(`out-${name}`), ...extra],
        env(fresh(`cold-cache-${name}`)),
      );
    };
  return [
    {
      group: "cold",
      name: "curl -o + openssl dgst (floor)",
      run: (i) =>
        measure([
          "bash",
          "-c",
          `cd ${mkdirFresh(fresh(`curl-${i}`))} && curl -sf -o kernel ${image.blobUrls[0]} && curl -sf -o initrd ` +
            `${image.blobUrls[1]} && openssl dgst -sha256 kernel initrd >/dev/null`,
        ]),
    },
    {
      group: "cold",
      name: "the same, then sync of the two files (durable floor)",
      run: (i) =>
        measure([
          "bash",
          "-c",
          `cd ${mkdirFresh(fresh(`curl-sync-${i}`))} && curl -sf -o kernel ${image.blobUrls[0]} && curl -sf -o ` +
            `initrd ${image.blobUrls[1]} && openssl dgst -sha256 kernel initrd >/dev/null && sync kernel initrd`,
        ]),
    },
    {
      group: "cold",
      name: "dd of as many bytes, conv=fsync (durable write floor)",
      run: (i) =>
        measure(["dd", "if=/dev/zero", `of=${fresh(`dd-sync-${i}`)}`, "bs=1M", `count=${image.mib}`, "conv=fsync"]),
    },
    {
      group: "cold",
      name: "dd of as many bytes, no fsync (plain write)",
      run: (i) => measure(["dd", "if=/dev/zero", `of=${fresh(`dd-${i}`)}`, "bs=1M", `count=${image.mib}`]),
    },
    {
      group: "cold",
      name: "bare Bun fetch + SHA-256 + write loop",
      run: (i) => measure(["bun", "-e", BARE_LOOP, mkdirFresh(fresh(`bare-${i}`)), ...image.blobUrls]),
    },
    { group: "cold", name: "ocicache pull (bun, from source)", run: cold(["bun", CLI]) },
    {
      group: "cold",
      name: "ocicache pull, no -o (binary)",
      run: (i) => measure([BIN, "pull", image.ref], env(fresh(`cold-cache-noout-${i}`))),
    },
    { group: "cold", name: "ocicache pull (binary)", run: cold([BIN]) },
    { group: "cold", name: "ocicache pull --concurrency 1 (binary)", run: cold([BIN], ["--concurrency", "1"]) },
    {
      group: "cold",
      name: "skopeo copy docker:// oci: (empty)",
      run: (i) =>
        measure([
          "skopeo",
          "copy",
          "-q",
          "--src-tls-verify=false",
          `docker://${image.ref}`,
          `oci:${fresh(`skopeo-${i}`)}:1`,
        ]),
    },
    {
      group: "cold",
      name: "ctr content fetch (containerd)",
      run: () => {
        const ms = measure([...CTR, "content", "fetch", "--plain-http", "--platform", `linux/${arch}`, image.ref]);
        // Cold again for the next run: the content goes, outside the measured time.
        ctr("images", "rm", image.ref);
        for (const digest of image.digests) ctr("content", "rm", digest);
        return ms;
      },
    },
    {
      group: "warm",
      name: "cp of the cached files (floor)",
      run: (i) => warm(() => measure(["cp", ...cached, mkdirFresh(fresh(`cp-${i}`))]))(),
    },
    {
      group: "warm",
      name: "ocicache pull -o (bun, from source)",
      run: (i) => warm(() => measure(["bun", CLI, "pull", image.ref, "-o", fresh(`warm-bun-${i}`)], env(warmCache)))(),
    },
    {
      group: "warm",
      name: "ocicache pull -o (binary)",
      run: (i) => warm(() => measure([BIN, "pull", image.ref, "-o", fresh(`warm-bin-${i}`)], env(warmCache)))(),
    },
    {
      group: "warm",
      name: "ocicache pull -o into an unchanged output (binary)",
      run: warm(() => measure([BIN, "pull", image.ref, "-o", join(dir, "prime")], env(warmCache))),
    },
    {
      group: "warm",
      name: "ocicache pull -o --link (binary)",
      run: (i) => warm(() => measure([BIN, "pull", image.ref, "-o", fresh(`link-${i}`), "--link"], env(warmCache)))(),
    },
    {
      group: "warm",
      name: "ocicache path, digest-pinned (bun, from source)",
      run: warm(() => measure(["bun", CLI, "path", image.pinned, "--role", "kernel"], env(warmCache))),
    },
    {
      group: "warm",
      name: "ocicache path, digest-pinned (binary)",
      run: warm(() => measure([BIN, "path", image.pinned, "--role", "kernel"], env(warmCache))),
    },
    {
      group: "warm",
      name: "skopeo copy docker:// oci: (all blobs present)",
      run: warm(() =>
        measure(["skopeo", "copy", "-q", "--src-tls-verify=false", `docker://${image.ref}`, `oci:${skopeoWarm}:1`]),
      ),
    },
  ];
}

/** A deterministic shuffle (seeded LCG), so runs of the benchmark are comparable. */
function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let state = seed * 2654435761;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function mkdirFresh(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}

function stats(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return {
    median: sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2,
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

/** SHA-256 in-process, 1 MiB chunks, as the download loop feeds it. */
function hashThroughput(): number {
  const chunk = new Uint8Array(MiB);
  randomFillSync(chunk);
  const hasher = new Bun.CryptoHasher("sha256");
  const started = performance.now();
  for (let i = 0; i < 512; i++) hasher.update(chunk);
  hasher.digest();
  return (512 * MiB) / ((performance.now() - started) / 1000) / 1e9;
}

const fmtMs = (ms: number) => (ms < 100 ? ms.toFixed(1) : ms.toFixed(0));

// Always built afresh: a binary left from an earlier checkout would measure old code.
const built = Bun.spawnSync(["bun", join(root, "scripts", "build.ts")], { stdout: "inherit", stderr: "inherit" });
if (built.exitCode !== 0) throw new Error("bench: building the binary failed");
const registry = await startRegistry();
const containerdDir = join(work, "containerd");
const peer = await startContainerd(containerdDir);
const containerd = { ctr: peer.ctr, argv: ["ctr", "--address", join(containerdDir, "containerd.sock")] };
const lines: string[] = [];
try {
  const sha = hashThroughput();
  for (const size of chosen) {
    const image = await pushImage(registry.url, size);
    const list = scenarios(image, size, containerd);
    const results = new Map<string, { ms: number[]; rss: number[] }>(list.map((s) => [s.name, { ms: [], rss: [] }]));
    // RUNS timed rounds, then three rounds under /usr/bin/time for the peak RSS (their median is reported).
    for (let i = 0; i < RUNS + 3; i++) {
      measuringRss = i >= RUNS;
      // Each round in another order, so that no command always follows the same one (page cache, writeback).
      const order = shuffle(list, i + 1);
      for (const scenario of order) {
        const value = scenario.run(i);
        results.get(scenario.name)![measuringRss ? "rss" : "ms"].push(value);
      }
    }
    measuringRss = false;
    const spawn = stats(Array.from({ length: 5 }, () => measure(["true"]))).median;
    const [k, n] = SIZES[size];
    lines.push(
      ``,
      `#### ${size}: kernel ${k} MiB + initrd ${n} MiB (${RUNS} runs each, interleaved; starting a process costs ` +
        `${spawn.toFixed(1)} ms here)`,
      ``,
    );
    lines.push("| command | median ms | min–max ms | vs floor | peak RSS MiB |");
    lines.push("| --- | ---: | ---: | ---: | ---: |");
    const median = (name: string) => stats(results.get(name)!.ms).median;
    for (const scenario of list) {
      const r = results.get(scenario.name)!;
      const s = stats(r.ms);
      const floor =
        scenario.group === "cold" ? median("curl -o + openssl dgst (floor)") : median("cp of the cached files (floor)");
      lines.push(
        `| ${scenario.name} | ${fmtMs(s.median)} | ${fmtMs(s.min)}–${fmtMs(s.max)} | ` +
          `${(s.median / floor).toFixed(2)} × | ${(stats(r.rss).median / 1024).toFixed(0)} |`,
      );
    }
    if (size === "large" || chosen.length === 1) {
      const coldBin = median("ocicache pull (binary)");
      const noOut = median("ocicache pull, no -o (binary)");
      const ddSync = median("dd of as many bytes, conv=fsync (durable write floor)");
      const ddPlain = median("dd of as many bytes, no fsync (plain write)");
      const rss = (name: string) => stats(results.get(name)!.rss).median / 1024;
      const ratio = (x: number) => `${x.toFixed(2)} ×`;
      const faster = (x: number) => `${x.toFixed(1)} × faster`;
      const targets = [
        [`cold pull, no -o ≤ 1.15 × dd conv=fsync`, noOut / ddSync, (x: number) => x <= 1.15, ratio],
        [
          `cold pull -o (a copy) ≤ 1.15 × dd conv=fsync + dd`,
          coldBin / (ddSync + ddPlain),
          (x: number) => x <= 1.15,
          ratio,
        ],
        [
          `(cold pull -o vs curl + openssl, for reference)`,
          coldBin / median("curl -o + openssl dgst (floor)"),
          () => true,
          ratio,
        ],
        [
          `(cold pull -o vs the durable floor, for reference)`,
          coldBin / median("the same, then sync of the two files (durable floor)"),
          () => true,
          ratio,
        ],
        [
          `cold pull ≥ 2 × faster than skopeo`,
          median("skopeo copy docker:// oci: (empty)") / coldBin,
          (x: number) => x >= 2,
          faster,
        ],
        [
          `cold pull ≥ 2 × faster than ctr content fetch`,
          median("ctr content fetch (containerd)") / coldBin,
          (x: number) => x >= 2,
          faster,
        ],
        [
          `compiled cold pull no slower than from source`,
          coldBin / median("ocicache pull (bun, from source)"),
          (x: number) => x <= 1,
          ratio,
        ],
        [
          `peak RSS ≤ 1.15 × the bare loop (medians of 3)`,
          rss("ocicache pull (binary)") / rss("bare Bun fetch + SHA-256 + write loop"),
          (x: number) => x <= 1.15,
          ratio,
        ],
        [`SHA-256 ≥ 1 GB/s`, sha, (x: number) => x >= 1, (x: number) => `${x.toFixed(2)} GB/s`],
        [
          `warm pull -o ≤ 1.1 × cp`,
          median("ocicache pull -o (binary)") / median("cp of the cached files (floor)"),
          (x: number) => x <= 1.1,
          ratio,
        ],
        [
          `parallel layers beat one at a time`,
          median("ocicache pull --concurrency 1 (binary)") / coldBin,
          (x: number) => x > 1,
          (x: number) => `${x.toFixed(2)} × (concurrency 1 / 4)`,
        ],
      ] as const;
      lines.push(``, `| target (${size}) | measured | met |`, `| --- | ---: | :---: |`);
      for (const [name, value, ok, show] of targets)
        lines.push(`| ${name} | ${show(value)} | ${ok(value) ? "yes" : "no"} |`);
    }
    rmSync(join(work, size), { recursive: true, force: true });
  }
} finally {
  await peer.stop();
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
const cpus = navigator.hardwareConcurrency;
console.log(
  `### Benchmark (${new Date().toISOString().slice(0, 10)}, ${cpus} cores, Bun ${Bun.version}, registry on 127.0.0.1)`,
);
console.log(lines.join("\n"));
// Start-up and scale: what each call from a makefile pays.
const startup = Bun.spawnSync(["bun", join(import.meta.dir, "bench-startup.ts")], {
  stdout: "pipe",
  stderr: "inherit",
});
console.log(`\n${startup.stdout.toString().trim()}`);
// What the cache holds per image.
const disk = Bun.spawnSync(["bun", join(import.meta.dir, "bench-disk.ts")], { stdout: "pipe", stderr: "inherit" });
console.log(`\n${disk.stdout.toString().trim()}`);
if (!Bun.argv.includes("--no-soak")) {
  // The mirror's soak runs after the pulls, on a registry of its own.
  const soak = Bun.spawnSync(["bun", join(import.meta.dir, "bench-mirror.ts")], { stdout: "pipe", stderr: "inherit" });
  console.log(`\n${soak.stdout.toString().trim()}`);
}
