/**
 * Put files where the caller asked: a copy-on-write clone where the file
 * system can (else a copy), or with `link` a hardlink to the read-only cache
 * file. Each lands by `rename`, so a reader never sees half a file.
 *
 * @module
 */

import { chmodSync, constants, copyFileSync, linkSync, mkdirSync, renameSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { StoreError } from "./errors.ts";
import { BlobWriter, copyRange, describeFsError } from "./writer.ts";
import type { Digest } from "./digest.ts";

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
      copyFileSync(source, tmp, constants.COPYFILE_FICLONE);
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
  mkdirSync(dirname(dest), { recursive: true });
  const writer = new BlobWriter(tempBeside(dest), dest, length, 0o644);
  const hasher = new Bun.CryptoHasher("sha256");
  try {
    copyRange(source, offset, length, (chunk) => {
      hasher.update(chunk);
      writer.write(chunk);
    });
  } catch (error) {
    writer.abort();
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
  const result = writer.commit();
  if (result.status !== "committed") {
    writer.abort();
    throw new StoreError(`Cannot write "${dest}": ${result.status === "failed" ? describeFsError(result.error) : result.reason}`);
  }
  return `sha256:${hasher.digest("hex")}` as Digest;
}

/** A temporary name in the destination's directory, so that `rename` stays on one file system. */
export function tempBeside(dest: string): string {
  return join(dirname(dest), `.${basename(dest)}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`);
}

/** Remove a file, ignoring one that is gone. */
export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already.
  }
}
