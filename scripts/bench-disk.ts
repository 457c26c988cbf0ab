/**
 * What the cache holds per image (`bun run bench:disk [--mib N]`, also run by `bun run bench`): a unikraft spec
 * image (kernel and initrd in one tar layer) and a kraftkit image (each file a layer of its own), each pulled cold
 * with `pull -o` by the compiled binary into a cache of its own; then `path --role initrd`, which needs a file of
 * its own. Prints the bytes of `blobs/` against the bytes of the blobs the image's manifests name (the index, the
 * platform's manifest, its config and layers), and the target: after a cold `pull -o`, at most 1.02 ×.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pushSampleImage } from "../tests/helpers/images.ts";
import { startRegistry } from "../tests/helpers/registry.ts";

const MiB = 1024 * 1024;
const total = Number(Bun.argv[Bun.argv.indexOf("--mib") + 1] ?? 0) || 72;
const kernelBytes = Math.max(1, Math.round(total / 9)) * MiB;
const initrdBytes = total * MiB - kernelBytes;
const root = join(import.meta.dir, "..");
const BIN = join(root, "dist", "ocicache");
const arch = process.arch === "arm64" ? "arm64" : "amd64";
const work = mkdtempSync(join(tmpdir(), "ocicache-bench-disk-"));
const registry = await startRegistry();

/** The bytes of the blobs the image's manifests name for this machine. */
async function imageBytes(repo: string, index: string, manifest: string): Promise<number> {
  const get = (digest: string, accept: string) =>
    fetch(`${registry.url}/v2/${repo}/manifests/${digest}`, { headers: { Accept: accept } }).then((r) => r.text());
  const indexText = await get(index, "application/vnd.oci.image.index.v1+json");
  const manifestText = await get(manifest, "application/vnd.oci.image.manifest.v1+json");
  const parsed = JSON.parse(manifestText) as { config: { size: number }; layers: Array<{ size: number }> };
  const blobs = [parsed.config, ...parsed.layers].reduce((sum, b) => sum + b.size, 0);
  return Buffer.byteLength(indexText) + Buffer.byteLength(manifestText) + blobs;
}

function blobBytes(cache: string): number {
  const dir = join(cache, "blobs", "sha256");
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

function run(argv: string[], cache: string): void {
  const ran = Bun.spawnSync([BIN, ...argv, "-q"], { env: { ...process.env, OCICACHE_DIR: cache } });
  if (ran.exitCode !== 0) throw new Error(`bench-disk: ${argv.join(" ")}: ${ran.stderr.toString()}`);
}

const rows: string[] = [];
const targets: string[] = [];
try {
  for (const format of ["spec", "kraftkit"] as const) {
    const image = await pushSampleImage(registry.url, `disk/${format}`, "1", { format, kernelBytes, initrdBytes });
    const repo = `disk/${format}`;
    const bytes = await imageBytes(repo, image.indexDigest, image.manifests[arch].digest);
    const cache = join(work, format);
    run(["pull", image.ref, "-o", join(work, `${format}-out`)], cache);
    const afterPull = blobBytes(cache);
    run(["path", image.ref, "--role", "initrd"], cache);
    const afterPath = blobBytes(cache);
    const ratio = (n: number) => `${(n / bytes).toFixed(3)} ×`;
    rows.push(
      `| ${format} | ${(bytes / MiB).toFixed(1)} | ${(afterPull / MiB).toFixed(1)} (${ratio(afterPull)}) | ` +
        `${(afterPath / MiB).toFixed(1)} (${ratio(afterPath)}) |`,
    );
    const met = afterPull <= 1.02 * bytes;
    const target = `${format}: cache after a cold pull -o ≤ 1.02 × the image's blobs`;
    targets.push(`| ${target} | ${ratio(afterPull)} | ${met ? "yes" : "no"} |`);
  }
} finally {
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `#### Disk use: kernel ${kernelBytes / MiB} MiB + initrd ${initrdBytes / MiB} MiB, cold pull -o, then path\n`,
);
console.log("| image | its blobs MiB | blobs/ after pull -o MiB | blobs/ after path --role initrd MiB |");
console.log("| --- | ---: | ---: | ---: |");
console.log(rows.join("\n"));
console.log("\n| target | measured | met |\n| --- | ---: | :---: |");
console.log(targets.join("\n"));
