/**
 * Files written outside the cache, where the caller asked (`-o DIR`, a
 * fallback when the cache cannot take a blob): a copy-on-write clone where
 * the file system can (else a copy), with `link` a hardlink to the read-only
 * cache file, or bytes written as they come (`OutputFile`). Each is made
 * beside its destination under a random name and lands by `rename`, so a
 * reader never sees half a file. Never fsynced: the caller's file, not the
 * cache's.
 *
 * @module
 */

import { lstatSync, mkdirSync, statfsSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { StoreError } from "../errors.ts";
import { type Digest, digestHex, hashFile } from "../oci/digest.ts";
import { readRange } from "../oci/read.ts";
import { describeFsError } from "./files.ts";
import { tempBeside } from "./paths.ts";
import {
  BlobWriter,
  cloneRangeAtomic,
  copyFileAtomic,
  type WriteExpectation,
  type WriteResult,
  WrittenFile,
} from "./writer.ts";

/**
 * A file written beside where it goes: created under a random name next to `near` (`O_EXCL | O_NOFOLLOW`: a name
 * planted beforehand is never the one used), then verified and renamed with mode 0644, or removed.
 *
 * @example Bytes written, verified and renamed into place
 * ```ts
 * import assert from "node:assert";
 * import { readFileSync } from "node:fs";
 * import { digestOf } from "../oci/digest.ts";
 * import { OutputFile } from "./output.ts";
 * const file = OutputFile.create("kernel", { limit: 11, what: "kernel" });
 * file.write(new TextEncoder().encode("a unikernel"));
 * assert.equal(file.commit("kernel", { digest: digestOf("a unikernel"), size: 11 }).status, "committed");
 * assert.equal(readFileSync("kernel", "utf8"), "a unikernel");
 * ```
 */
export class OutputFile extends WrittenFile {
  /**
   * @param options.limit no write takes it past this many bytes; `hash: false` for a copy another writer hashes.
   * @throws {Error} the file system's error when the file cannot be made.
   */
  static create(near: string, options: { limit?: number; what?: string; hash?: boolean } = {}): OutputFile {
    return new OutputFile(BlobWriter.create(tempBeside(near), options));
  }

  /** Its temp file, until it is committed. */
  get path(): string {
    return this.writer.path;
  }

  /** Rename it to `dest` (mode 0644) once it is `expected`; a result other than `committed` leaves it: `abort`. */
  commit(dest: string, expected: WriteExpectation): WriteResult {
    return this.writer.commit(dest, expected, { mode: 0o644, durable: false });
  }

  /** Remove it. */
  abort(): void {
    this.writer.abort();
  }
}

/** How a file is placed. */
export interface PlaceFileOptions {
  /** Hardlink the read-only cache file instead of copying. @default false */
  link?: boolean;
}

/**
 * Place `source` at `dest`: cloned or copied (mode 0644, the caller's own
 * file), or hardlinked with `link`.
 *
 * @throws {StoreError} when the destination cannot be written.
 * @example A copy of a file, in place
 * ```ts
 * import assert from "node:assert";
 * import { readFileSync, writeFileSync } from "node:fs";
 * import { placeFile } from "./output.ts";
 * writeFileSync("source", "a unikernel");
 * placeFile("source", "out/kernel");
 * assert.equal(readFileSync("out/kernel", "utf8"), "a unikernel");
 * ```
 */
export function placeFile(source: string, dest: string, options: PlaceFileOptions = {}): void {
  try {
    mkdirSync(dirname(dest), { recursive: true });
    copyFileAtomic(source, dest, options);
  } catch (error) {
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
}

/**
 * Write `length` bytes of `source` from `offset` to `dest` (a file inside a tar layer, written from the layer), and
 * return their digest, and whether the output shares the layer's extents: cloned where the file system can and the
 * file starts on one of its blocks (btrfs, XFS with reflink), else copied.
 *
 * @throws {StoreError} when the destination cannot be written.
 */
export function placeRange(
  source: string,
  offset: number,
  length: number,
  dest: string,
): { digest: Digest; cloned: boolean } {
  let writer: OutputFile;
  try {
    mkdirSync(dirname(dest), { recursive: true });
    if (cloneRangeAtomic(source, offset, length, dest))
      return { digest: hashFile(source, offset, length).digest, cloned: true };
    writer = OutputFile.create(dest, { limit: length });
  } catch (error) {
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
  try {
    readRange(source, offset, length, (chunk) => writer.write(chunk));
  } catch (error) {
    writer.abort();
    throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
  }
  const result = writer.commit(dest, { size: length });
  if (result.status !== "committed") {
    writer.abort();
    throw new StoreError(
      `Cannot write "${dest}": ${result.status === "failed" ? describeFsError(result.error) : result.reason}`,
    );
  }
  return { digest: result.digest, cloned: false };
}

/**
 * A copy of a blob written into the output directory while the blob downloads, so that `pull -o` does not copy it
 * again after the download (on a file system that cannot clone, that copy is most of the time the output costs).
 * It receives exactly the bytes the cache's writer hashes, from the first; a download that resumes a partial file
 * abandons it. Once the blob is verified, `finish` renames it into place; otherwise `discard` removes it and the
 * output is copied as usual. Never fsynced: an output is the caller's file, not the cache's. A signal removes it
 * (it counts among the process's unfinished files).
 */
export class OutputTee {
  readonly #writer: OutputFile;
  readonly #digest: Digest;
  #abandoned = false;
  #closed = false;

  /** @throws {Error} the file system's error when the temp file cannot be made (the output is then copied). */
  constructor(outDir: string, digest: Digest) {
    // A random name: one planted beforehand in an output directory others can write is never the one used.
    this.#writer = OutputFile.create(`${outDir}/layer`, { hash: false });
    this.#digest = digest;
  }

  /** Its temp file. */
  get path(): string {
    return this.#writer.path;
  }

  write(chunk: Uint8Array): void {
    if (this.#abandoned || this.#closed) return;
    try {
      this.#writer.write(chunk);
    } catch {
      this.#abandoned = true;
    }
  }

  /** The download starts over from the first byte. */
  restart(): void {
    if (this.#closed) return;
    try {
      this.#writer.truncate();
      this.#abandoned = false;
    } catch {
      this.#abandoned = true;
    }
  }

  /** The download does not start from the first byte: this copy cannot be whole. */
  abandon(): void {
    this.#abandoned = true;
  }

  /**
   * Rename it to `dest` (mode 0644, set on its descriptor) when it holds `size` bytes, all of one download from its
   * first byte, and its temp file is still the one it wrote.
   */
  finish(dest: string, size: number): boolean {
    if (this.#closed || this.#abandoned || this.#writer.written !== size) return false;
    const result = this.#writer.commit(dest, { digest: this.#digest, size });
    this.#closed = true;
    if (result.status !== "committed") this.#writer.abort();
    return result.status === "committed";
  }

  /** Remove it (not needed, or not whole); once finished, its name may be another tee's: nothing is removed. */
  discard(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.abort();
  }
}

/**
 * Where a layer goes in `outDir` when the cache cannot take it (hidden, named by the layer): the files taken out of
 * it are placed from there, then it is removed.
 */
export function layerFallbackPath(outDir: string, digest: Digest): string {
  return `${outDir}/.ocicache-${digestHex(digest).slice(0, 16)}.layer`;
}

/**
 * Whether writing outputs while blobs download is worth it: not where the cache's files can be cloned into `outDir`
 * (a reflink of the same file system, btrfs or XFS, costs nothing later).
 */
export function teeWorthIt(cacheRoot: string, outDir: string): boolean {
  try {
    const [cache, out] = [statSync(cacheRoot), statSync(outDir)];
    return cache.dev !== out.dev || !CLONING_FILE_SYSTEMS.includes(statfsSync(outDir).type);
  } catch {
    return false;
  }
}

/** btrfs and XFS, by `statfs` type: file systems that clone a file in place of copying it. */
const CLONING_FILE_SYSTEMS = [0x9123683e, 0x58465342];

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
