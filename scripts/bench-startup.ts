/**
 * Start-up and scale: `bun scripts/bench-startup.ts [RUNS]` (30 by default).
 * What a makefile pays per call: the compiled `--version` and a warm
 * compiled `path` against a compiled hello-world, `bun mod.ts path` against
 * `bun hello.ts`, a warm `path` with 10,000 more references cached
 * against the same with one, and a warm `path` under a signature policy
 * (`sigstoreSigned`, the image signed by openssl as cosign signs, or by a
 * Sigstore bundle from `@sigstore/sign`) against the same with none. Each command runs RUNS times, interleaved;
 * medians and their ratios, each target marked met or not.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeKey, pushSignature } from "../tests/helpers/cosign.ts";
import { pushSampleImage } from "../tests/helpers/images.ts";
import { startRegistry } from "../tests/helpers/registry.ts";
import { pushBundle } from "../tests/helpers/sigstore.ts";

const RUNS = Number(Bun.argv[2] ?? 30);
const HELLO = "hello-world (compiled)";
const root = join(import.meta.dir, "..");
const BIN = join(root, "dist", "ocicache");
const work = mkdtempSync(join(tmpdir(), "ocicache-bench-startup-"));

const built = Bun.spawnSync(["bun", join(root, "scripts", "build.ts")], { stdout: "ignore", stderr: "inherit" });
if (built.exitCode !== 0) throw new Error("bench-startup: building the binary failed");
writeFileSync(join(work, "hello.ts"), 'console.log("hello");\n');
const hello = Bun.spawnSync(["bun", "build", "--compile", join(work, "hello.ts"), "--outfile", join(work, "hello")]);
if (hello.exitCode !== 0) throw new Error("bench-startup: compiling hello-world failed");

const registry = await startRegistry();
const lines: string[] = [];
try {
  const image = await pushSampleImage(registry.url, "bench/startup", "1", { format: "kraftkit" });
  const pinned = `${image.name}@${image.indexDigest}`;
  const key = makeKey(work, "cosign");
  await pushSignature(registry.url, "bench/startup", image.indexDigest, image.name, key.key, work);
  const policy = join(work, "policy.json");
  writeFileSync(policy, JSON.stringify({ default: [{ type: "sigstoreSigned", keyPath: key.pub }] }));
  const bundled = await pushSampleImage(registry.url, "bench/bundled", "1", { format: "kraftkit" });
  const bundledPinned = `${bundled.name}@${bundled.indexDigest}`;
  await pushBundle(registry.url, "bench/bundled", bundled.indexDigest, key.key, { name: bundled.name });
  const one = join(work, "one");
  const many = join(work, "many");
  for (const ref of [pinned, bundledPinned]) {
    const pulled = Bun.spawnSync([BIN, "pull", ref, "-q", "--policy", policy], {
      env: { ...process.env, OCICACHE_DIR: one },
    });
    if (pulled.exitCode !== 0) throw new Error(`bench-startup: the first pull of ${ref} failed`);
  }
  cpSync(one, many, { recursive: true });
  const index = JSON.parse(readFileSync(join(many, "index.json"), "utf8"));
  const entry = index.manifests[0];
  for (let i = 0; i < 10_000; i++) {
    const name = `${registry.host}/bench/other${i}:1`;
    index.manifests.push({
      ...entry,
      annotations: { ...entry.annotations, "org.opencontainers.image.ref.name": name },
    });
  }
  writeFileSync(join(many, "index.json"), JSON.stringify(index));

  const path = (cache: string, argv: string[], more: string[] = [], ref = pinned) => ({
    argv: [...argv, "path", ref, "--role", "kernel", ...more],
    cache,
  });
  const commands: Record<string, { argv: string[]; cache?: string }> = {
    [HELLO]: { argv: [join(work, "hello")] },
    "ocicache --version (compiled)": { argv: [BIN, "--version"] },
    "ocicache path, warm (compiled)": path(one, [BIN]),
    "ocicache path, warm, 10,000 more references (compiled)": path(many, [BIN]),
    "ocicache path, warm, under a sigstoreSigned policy (compiled)": path(one, [BIN], ["--policy", policy]),
    "ocicache path, warm, under the policy, met by a kept bundle (compiled)": path(
      one,
      [BIN],
      ["--policy", policy],
      bundledPinned,
    ),
    "bun hello.ts": { argv: ["bun", join(work, "hello.ts")] },
    "bun mod.ts path, warm": path(one, ["bun", join(root, "mod.ts")]),
  };
  const times = new Map<string, number[]>(Object.keys(commands).map((name) => [name, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const [name, { argv, cache }] of Object.entries(commands)) {
      const env = { ...process.env, ...(cache !== undefined && { OCICACHE_DIR: cache }) };
      const started = performance.now();
      const ran = Bun.spawnSync(argv, { env, stdout: "ignore", stderr: "pipe" });
      times.get(name)!.push(performance.now() - started);
      if (ran.exitCode !== 0) throw new Error(`${name} exited ${ran.exitCode}: ${ran.stderr.toString().trim()}`);
    }
  }
  const median = (name: string) => {
    const sorted = [...times.get(name)!].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  };
  lines.push(
    `#### Start-up and scale (${RUNS} runs each, interleaved)`,
    "",
    "| command | median ms |",
    "| --- | ---: |",
  );
  for (const name of Object.keys(commands)) lines.push(`| ${name} | ${median(name).toFixed(1)} |`);
  const targets: Array<[string, string, string, number]> = [
    ["compiled --version ≤ 1.2 × compiled hello-world", "ocicache --version (compiled)", HELLO, 1.2],
    [
      "warm compiled path ≤ 1.5 × compiled hello-world",
      "ocicache path, warm (compiled)",
      "hello-world (compiled)",
      1.5,
    ],
    ["bun mod.ts path ≤ 2.5 × bun hello.ts", "bun mod.ts path, warm", "bun hello.ts", 2.5],
    [
      "warm path with 10,000 more references ≤ 1.3 × with one",
      "ocicache path, warm, 10,000 more references (compiled)",
      "ocicache path, warm (compiled)",
      1.3,
    ],
    [
      "warm path under a sigstoreSigned policy ≤ 1.2 × with none",
      "ocicache path, warm, under a sigstoreSigned policy (compiled)",
      "ocicache path, warm (compiled)",
      1.2,
    ],
    [
      "warm path under the policy, met by a Sigstore bundle, ≤ 1.2 × with none",
      "ocicache path, warm, under the policy, met by a kept bundle (compiled)",
      "ocicache path, warm (compiled)",
      1.2,
    ],
  ];
  lines.push("", "| target | measured | met |", "| --- | ---: | :---: |");
  for (const [name, measured, reference, bound] of targets) {
    const ratio = median(measured) / median(reference);
    lines.push(`| ${name} | ${ratio.toFixed(2)} × | ${ratio <= bound ? "yes" : "no"} |`);
  }
} finally {
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(lines.join("\n"));
