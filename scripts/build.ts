/**
 * The release binary: `bun run build` makes `dist/ocicache` for this machine
 * with `bun build --compile` (whitespace and syntax minified, names kept, with
 * bytecode and source maps, ESM); `--all` also
 * makes `dist/ocicache-linux-x64` and `dist/ocicache-linux-arm64`.
 */
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const targets: Array<{ outfile: string; target?: string }> = [{ outfile: "dist/ocicache" }];
if (Bun.argv.includes("--all")) {
  targets.push(
    { outfile: "dist/ocicache-linux-x64", target: "bun-linux-x64" },
    { outfile: "dist/ocicache-linux-arm64", target: "bun-linux-arm64" },
  );
}
for (const { outfile, target } of targets) {
  const argv = [
    "bun",
    "build",
    "lib/cli/main.ts",
    "--compile",
    "--minify-syntax",
    "--minify-whitespace",
    "--bytecode",
    "--splitting",
    // --debug traces name lib/…ts lines and our own functions and errors, not the bundle's minified ones.
    "--sourcemap",
    // A binary run inside someone's checkout reads no .env and no bunfig.toml there (a preload would run its code).
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    // A smaller heap, collected sooner: a 512 MiB pull peaks about 8 MiB lower, no slower.
    "--compile-exec-argv=--smol",
    "--format=esm",
    "--outfile",
    outfile,
    ...(target === undefined ? [] : [`--target=${target}`]),
  ];
  const result = Bun.spawnSync(argv, { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (result.exitCode !== 0) process.exit(result.exitCode ?? 1);
  console.log(`build: ${outfile}${target === undefined ? "" : ` (${target})`}`);
}
