/**
 * The one way a file is written: every blob, partial download, file taken
 * out of a tar layer, fallback and output goes through `BlobWriter`. It hashes
 * and counts as it writes; `commit()` fsyncs, checks size and digest, sets the
 * mode on its own descriptor and renames into place (containerd's local
 * content writer does the same). Files are created with `O_EXCL | O_NOFOLLOW`
 * and opened with `O_NOFOLLOW`: a link planted where a temp file goes is
 * never written through.
 *
 * @module
 */

import {
  closeSync,
  constants,
  fchmodSync,
  fdatasync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
} from "node:fs";
import type { Digest } from "../oci/digest.ts";
import { COPY_CHUNK_BYTES, writeAll } from "./files.ts";
import { DigestMismatchError, IntegrityError, SizeMismatchError } from "../errors.ts";

/**
 * The outcome of writing a blob: only `committed` means the file is in place.
 * `skipped` and `failed` say why it is not, and a pull goes on without it.
 */
export type WriteResult =
  | { status: "committed"; path: string; digest: Digest; size: number }
  | { status: "skipped"; reason: string }
  | { status: "failed"; error: Error };

/** What written content must turn out to be; what is left out is not checked. */
export interface WriteExpectation {
  digest?: Digest;
  size?: number;
}

/** Options of `BlobWriter.create` and `BlobWriter.resume`. */
export interface WriterOptions {
  /** Refuse a write that would take the file past this many bytes. */
  limit?: number;
  /** What is written, for messages. @default "content" */
  what?: string;
}

/**
 * One file being written: `commit()` puts it in place, `abort()` removes it,
 * `close()` keeps it (a resumable partial download).
 *
 * @example
 * ```ts
 * import { BlobWriter } from "./writer.ts";
 * const writer = BlobWriter.create("/tmp/example.part");
 * writer.write(new TextEncoder().encode("hello"));
 * const result = writer.commit("/tmp/example.txt", { size: 5 }, 0o644);
 * console.log(result.status); // committed
 * ```
 */
export class BlobWriter {
  /** The file being written. */
  readonly path: string;
  readonly #limit: number;
  readonly #what: string;
  #fd: number | undefined;
  #hasher = new Bun.CryptoHasher("sha256");
  #digest: Digest | undefined;
  #written = 0;
  #flushedAt = 0;
  #flushing = false;

  private constructor(path: string, fd: number, options: WriterOptions) {
    this.path = path;
    this.#fd = fd;
    this.#limit = options.limit ?? Number.MAX_SAFE_INTEGER;
    this.#what = options.what ?? "content";
  }

  /**
   * Create a new file at `path`; it is removed if the process exits before
   * a commit or an abort.
   *
   * @throws {Error} the file system's error, `EEXIST` when anything (a link too) is at `path`.
   */
  static create(path: string, options: WriterOptions = {}): BlobWriter {
    const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    UNFINISHED.add(path);
    return new BlobWriter(path, fd, options);
  }

  /**
   * Go on writing the partial file at `path` (created when absent): what it
   * holds is hashed again, and handed to `onExisting`, before new bytes are
   * appended. A partial file that is not a regular file of its own (a link,
   * a hardlink to another file) is replaced by an empty one; one longer than
   * `limit` starts over.
   *
   * @throws {Error} the file system's error.
   */
  static async resume(
    path: string,
    options: WriterOptions & { onExisting?: (chunk: Uint8Array) => void | Promise<void> } = {},
  ): Promise<BlobWriter> {
    const flags =
      constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK;
    let fd: number;
    try {
      fd = openSync(path, flags, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ELOOP") throw error;
      unlinkSync(path);
      fd = openSync(path, flags, 0o644);
    }
    const stat = fstatSync(fd);
    if (!stat.isFile() || stat.nlink !== 1) {
      closeSync(fd);
      unlinkSync(path);
      return BlobWriter.create(path, options);
    }
    const writer = new BlobWriter(path, fd, options);
    if (stat.size > writer.#limit) {
      writer.truncate();
      return writer;
    }
    const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(stat.size, 1)));
    while (writer.#written < stat.size) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, stat.size - writer.#written), writer.#written);
      if (n === 0) break;
      const chunk = buffer.subarray(0, n);
      writer.#hasher.update(chunk);
      writer.#written += n;
      await options.onExisting?.(Buffer.from(chunk));
    }
    return writer;
  }

  /** Bytes written so far. */
  get written(): number {
    return this.#written;
  }

  /**
   * Append a chunk.
   *
   * @throws {SizeMismatchError} when it would run past the limit (nothing is written).
   * @throws {Error} the file system's error (ENOSPC, EIO): its owner then aborts the writer.
   */
  write(chunk: Uint8Array): void {
    if (this.#fd === undefined || this.#digest !== undefined) throw new TypeError("BlobWriter is closed");
    if (this.#written + chunk.byteLength > this.#limit)
      throw new SizeMismatchError(this.#limit, this.#written + chunk.byteLength, this.#what);
    this.#hasher.update(chunk);
    writeAll(this.#fd, chunk, (n) => {
      this.#written += n;
    });
    if (this.#written - this.#flushedAt >= FLUSH_EVERY_BYTES && !this.#flushing) {
      // Start writing back now, on another thread, so that the fsync at commit has little left to do.
      this.#flushing = true;
      this.#flushedAt = this.#written;
      fdatasync(this.#fd, () => {
        this.#flushing = false;
      });
    }
  }

  /** Drop what the file holds, to start over. */
  truncate(): void {
    if (this.#fd === undefined) throw new TypeError("BlobWriter is closed");
    ftruncateSync(this.#fd, 0);
    this.#hasher = new Bun.CryptoHasher("sha256");
    this.#digest = undefined;
    this.#written = 0;
    this.#flushedAt = 0;
  }

  /** The digest of every byte written; no byte can be written after it. */
  digest(): Digest {
    this.#digest ??= `sha256:${this.#hasher.digest("hex")}` as Digest;
    return this.#digest;
  }

  /**
   * Check what was written against what it must be.
   *
   * @throws {SizeMismatchError} when the size differs.
   * @throws {DigestMismatchError} when the digest differs.
   */
  verify(expected: WriteExpectation): void {
    if (expected.size !== undefined && this.#written !== expected.size)
      throw new SizeMismatchError(expected.size, this.#written, this.#what);
    if (expected.digest !== undefined && this.digest() !== expected.digest)
      throw new DigestMismatchError(expected.digest, this.digest(), this.#what);
  }

  /**
   * Verify, flush, set `mode` and rename into `dest`; what is at `dest` then
   * must be a regular file of the size written (another process may have
   * committed the same verified content there a moment later, which is as
   * good). A failed commit leaves the file for the caller to abort (an
   * integrity failure) or to use otherwise.
   */
  commit(dest: string, expected: WriteExpectation, mode = 0o444): WriteResult {
    if (this.#fd === undefined) throw new TypeError("BlobWriter is closed");
    try {
      this.verify(expected);
      fsyncSync(this.#fd);
      fchmodSync(this.#fd, mode);
      closeSync(this.#fd);
      this.#fd = undefined;
      renameSync(this.path, dest);
      UNFINISHED.delete(this.path);
      const placed = lstatSync(dest);
      if (!placed.isFile() || placed.size !== this.#written) {
        throw new IntegrityError(`Cannot verify "${dest}": another file took its place while it was renamed`);
      }
      return { status: "committed", path: dest, digest: this.digest(), size: this.#written };
    } catch (error) {
      return { status: "failed", error: error as Error };
    }
  }

  /** Close and keep the file: a resumable download that the next try continues. */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** Close and remove the file. */
  abort(): void {
    if (this.#fd !== undefined) {
      try {
        closeSync(this.#fd);
      } catch {
        // Already unusable; the file is removed next.
      }
      this.#fd = undefined;
    }
    UNFINISHED.delete(this.path);
    try {
      unlinkSync(this.path);
    } catch {
      // Gone already, or on a file system that refuses; cleanup removes stale temp files.
    }
  }
}

/** Bytes written between two background flushes of a large file. */
const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;

/** Files of writers that are neither committed nor aborted, and cannot be resumed. */
const UNFINISHED = new Set<string>();

/** Count `path` among this process's unfinished files (a temp file written elsewhere than by a `BlobWriter`). */
export function trackUnfinished(path: string): void {
  UNFINISHED.add(path);
}

/** `path` is finished: renamed into place, or removed. */
export function untrackUnfinished(path: string): void {
  UNFINISHED.delete(path);
}

/** Remove the unfinished temp files of this process: on exit, so that a signal leaves none behind. */
export function removeUnfinished(): void {
  for (const path of UNFINISHED) {
    try {
      unlinkSync(path);
    } catch {
      // Gone already.
    }
  }
  UNFINISHED.clear();
}
