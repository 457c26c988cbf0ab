/**
 * A small tmpfs mounted by the test (as root), to make a cache directory
 * full or read-only; file modes don't stop root.
 *
 * @module
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Tmpfs {
  dir: string;
  readOnly(): void;
  unmount(): void;
}

export function mountTmpfs(sizeBytes: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), "ocicache-tmpfs-"));
  run(["mount", "-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", dir]);
  return {
    dir,
    readOnly: () => run(["mount", "-o", "remount,ro", dir]),
    unmount: () => {
      run(["umount", dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function run(argv: string[]): void {
  const result = Bun.spawnSync(argv);
  if (result.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr.toString()}`);
}
