/**
 * The compiled binary, as users run it (`bun run build`: `dist/ocicache`, with `--smol` built in), made once per
 * test process.
 *
 * @module
 */

import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
let built: string | undefined;

/** The path of `dist/ocicache`, built by `scripts/build.ts` the first time it is asked for. */
export function compiledBinary(): string {
  if (built !== undefined) return built;
  const result = Bun.spawnSync(["bun", join(ROOT, "scripts", "build.ts")], { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`build failed: ${result.stderr.toString()}`);
  built = join(ROOT, "dist", "ocicache");
  return built;
}
