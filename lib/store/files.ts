/**
 * Small file helpers of the store: listing and removing entries without
 * following links, small JSON records read within a bound, one line for a
 * file-system failure. Files are written only through `writer.ts` and read
 * only through `../oci/read.ts`; `writer.ts` (like `paths.ts`) is the
 * store's own, and what others may use of it is re-exported here: a whole
 * small file written atomically (the lock file of `lock`, the admin token),
 * the checks of a directory, and the removal of a process's unfinished files
 * on a signal.
 *
 * @module
 */

import { lstatSync, readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { readFileBounded } from "../oci/read.ts";

export { canClone, probeWritable, removeUnfinished, type WriteResult, writeFileAtomic } from "./writer.ts";

/** The names in a directory; none when it is missing or cannot be read. */
export function listNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Remove each entry of `dir` that `keep` does not keep (a link is removed itself, never its target); one that
 * cannot be removed (a directory planted there) stays, and is never read as a file.
 */
export function removeEntriesUnless(dir: string, keep: (name: string, path: string) => boolean): void {
  for (const name of listNames(dir)) {
    const path = join(dir, name);
    if (keep(name, path)) continue;
    try {
      unlinkSync(path);
    } catch {
      // Not a file: left where it is.
    }
  }
}

/** A small JSON file: parsed when it is a regular file (no link followed) of at most `maxBytes`, else `undefined`. */
export function readSmallJson(path: string, maxBytes: number): unknown {
  try {
    return JSON.parse(readFileBounded(path, maxBytes).toString("utf8"));
  } catch {
    return undefined;
  }
}

/** Whether anything (a link too, never followed) is at `path`. */
export function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** One line for a file-system failure: `read-only file system`, `no space left on device`. */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = {
    EROFS: "read-only file system",
    ENOSPC: "no space left on device",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EDQUOT: "disk quota exceeded",
    EIO: "input/output error",
    ELOOP: "a symbolic link is in the way",
  };
  return (code !== undefined ? reasons[code] : undefined) ?? (error instanceof Error ? error.message : String(error));
}
