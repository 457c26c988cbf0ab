/**
 * Put files where the caller asked: a copy-on-write clone where the file
 * system can (else a copy), or with `link` a hardlink to the read-only cache
 * file. Each lands by `rename`, so a reader never sees half a file.
 *
 * @module
 */

import { chmodSync, constants, copyFileSync, linkSync, lstatSync, mkdirSync, renameSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Digest } from "../oci/digest.ts";
import { StoreError } from "../errors.ts";
import { tempBeside } from "../store/paths.ts";
import { BlobWriter } from "../store/writer.ts";
import { copyRange, describeFsError } from "../store/files.ts";

/** How a file is placed. */
export interface PlaceOptions {
  /** Hardlink the read-only cache file instead of copying. @default false */
  link?: boolean;
}

/**
 * Place `source` at `dest`: cloned or copied (mode 0644, the caller's own
 * file), or hardlinked with `link`.
 *
 * @throws {StoreError} when the destination cannot be written.
 * @example
 * ```ts
 * import { placeFile } from "./output.ts";
 * placeFile("/etc/hostname", "/tmp/hostname-copy");
 * ```
 */
export function placeFile(source: string, dest: string, options: PlaceOptions = {}): void {
  const tmp = tempBeside(dest);
  try {
    mkdirSync(dirname(dest), { recursive: true });
    if (options.link) {
      linkSync(source, tmp);
    } else {
      copyFileSync(source, tmp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
      chmodSync(tmp, 0o644);
    }
    renameSync(tmp, dest);
  } catch (error) {
    removeQuietly(tmp);
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
}

/**
 * Write `length` bytes of `source` from `offset` to `dest` (a file inside a
 * tar layer, when the cache cannot keep it), and return their digest.
 *
 * @throws {StoreError} when the destination cannot be written.
 */
export function placeRange(source: string, offset: number, length: number, dest: string): Digest {
  let writer: BlobWriter;
  try {
    mkdirSync(dirname(dest), { recursive: true });
    writer = BlobWriter.create(tempBeside(dest), { limit: length });
  } catch (error) {
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
  try {
    copyRange(source, offset, length, (chunk) => writer.write(chunk));
  } catch (error) {
    writer.abort();
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
  const result = writer.commit(dest, { size: length }, 0o644);
  if (result.status !== "committed") {
    writer.abort();
    throw new StoreError(
      `Cannot write "${dest}": ${result.status === "failed" ? describeFsError(result.error) : result.reason}`,
    );
  }
  return result.digest;
}

/** Whether `a` and `b` are the same file (a hardlink placed before); a link is never followed. */
export function sameInode(a: string, b: string): boolean {
  try {
    const [x, y] = [lstatSync(a), lstatSync(b)];
    return x.isFile() && x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** Remove a file, ignoring one that is gone. */
export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already.
  }
}
