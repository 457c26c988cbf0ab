/**
 * File systems mounted by a test (as root): a small tmpfs, to make a cache
 * directory full or read-only (file modes don't stop root), and an XFS on a
 * loop device, where files clone.
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

/**
 * An XFS file system (reflink on, as mkfs.xfs makes it) on a loop device over a file: where a range of a file can
 * be cloned into another (FICLONERANGE).
 */
export function mountXfs(): { dir: string; unmount(): void } {
  const work = mkdtempSync(join(tmpdir(), "ocicache-xfs-"));
  const image = join(work, "xfs.img");
  const dir = join(work, "mnt");
  run(["truncate", "-s", "320M", image]);
  run(["mkfs.xfs", "-q", image]);
  run(["mkdir", dir]);
  run(["mount", "-o", "loop", image, dir]);
  return {
    dir,
    unmount: () => {
      run(["umount", dir]);
      rmSync(work, { recursive: true, force: true });
    },
  };
}

function run(argv: string[]): void {
  const result = Bun.spawnSync(argv);
  if (result.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr.toString()}`);
}
