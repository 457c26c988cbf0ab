/**
 * The one door through which ocicache writes a file, in the cache or outside
 * it: every blob, partial download, file taken out of a tar layer, fallback,
 * output, record, memo, `index.json`, lock file and marker. `BlobWriter`
 * hashes and counts as it writes; `commit()` fsyncs, checks size and digest,
 * sets the mode on its own descriptor and renames into place (containerd's
 * local content writer does the same). Files are created under a random name
 * with `O_EXCL | O_NOFOLLOW` and opened with `O_NOFOLLOW`: a link planted
 * where a temp file goes is never written through, and one renamed into its
 * place meanwhile is removed, never left at the destination.
 * `scripts/check-io.ts` fails the suite when another module writes, renames,
 * links, copies or chmods a file by itself.
 *
 * @module
 */

import {
  closeSync,
  constants,
  copyFileSync,
  fchmodSync,
  fdatasync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  futimesSync,
  linkSync,
  lstatSync,
  openSync,
  readSync,
  renameSync,
  type Stats,
  statfsSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { DigestMismatchError, IntegrityError, SizeMismatchError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { READ_CHUNK_BYTES } from "../oci/read.ts";
import { tempBeside, tempName } from "./paths.ts";

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
  /** Hash what is written (`digest()`, `verify()`); off for a copy whose bytes another writer hashes. @default true */
  hash?: boolean;
}

/** How `commit` puts a file in place. */
export interface CommitOptions {
  /** Its mode, set on the descriptor. @default 0o444 */
  mode?: number;
  /** `fsync` before the rename: off for what is not the cache's (an output) or can be made again. @default true */
  durable?: boolean;
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
  #hasher: Bun.CryptoHasher | undefined;
  #digest: Digest | undefined;
  #written = 0;
  #flushedAt = 0;
  #flushing = false;

  private constructor(path: string, fd: number, options: WriterOptions) {
    this.path = path;
    this.#fd = fd;
    this.#limit = options.limit ?? Number.MAX_SAFE_INTEGER;
    this.#what = options.what ?? "content";
    if (options.hash !== false) this.#hasher = new Bun.CryptoHasher("sha256");
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
    const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, Math.max(stat.size, 1)));
    while (writer.#written < stat.size) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, stat.size - writer.#written), writer.#written);
      if (n === 0) break;
      const chunk = buffer.subarray(0, n);
      writer.#hasher?.update(chunk);
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
    this.#hasher?.update(chunk);
    // At the writer's own position: after `truncate` the file starts again at its first byte (with the O_APPEND of
    // a resumed partial file, Linux appends, which is the same place).
    for (let offset = 0; offset < chunk.byteLength; ) {
      const n = writeSync(this.#fd, chunk, offset, chunk.byteLength - offset, this.#written);
      offset += n;
      this.#written += n;
    }
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
    if (this.#hasher !== undefined) this.#hasher = new Bun.CryptoHasher("sha256");
    this.#digest = undefined;
    this.#written = 0;
    this.#flushedAt = 0;
  }

  /** The digest of every byte written; no byte can be written after it. */
  digest(): Digest {
    if (this.#hasher === undefined) throw new TypeError("BlobWriter does not hash");
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
    // A writer that does not hash copies bytes another writer hashed: their digest is vouched for by that one.
    if (this.#hasher === undefined && expected.digest === undefined)
      throw new TypeError("BlobWriter does not hash: commit it with the digest its bytes were verified against");
    if (expected.digest !== undefined && this.#hasher !== undefined && this.digest() !== expected.digest)
      throw new DigestMismatchError(expected.digest, this.digest(), this.#what);
  }

  /**
   * Verify, flush, set the mode and rename into `dest`; what is at `dest` then
   * must be a regular file of the size written (another process may have
   * committed the same verified content there a moment later, which is as
   * good). Before the rename, the file at this writer's path must still be
   * the one it wrote: one swapped for a link or another file is never renamed
   * into place. A failed commit leaves the file for the caller to abort (an
   * integrity failure) or to use otherwise.
   */
  commit(dest: string, expected: WriteExpectation, options: CommitOptions = {}): WriteResult {
    if (this.#fd === undefined) throw new TypeError("BlobWriter is closed");
    try {
      this.verify(expected);
      if (options.durable !== false) fsyncSync(this.#fd);
      fchmodSync(this.#fd, options.mode ?? 0o444);
      const own = fstatSync(this.#fd);
      closeSync(this.#fd);
      this.#fd = undefined;
      checkOwnFile(own, this.path, dest);
      renameSync(this.path, dest);
      UNFINISHED.delete(this.path);
      const placed = lstatSync(dest);
      if (!placed.isFile() || placed.size !== this.#written) {
        if (!placed.isFile()) unlinkSync(dest);
        throw new IntegrityError(`Cannot write "${dest}": another file took its place while it was renamed`);
      }
      return { status: "committed", path: dest, digest: expected.digest ?? this.digest(), size: this.#written };
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

/**
 * A file being written, as the store's ingest (`Ingest`) and an output (`OutputFile`) both hand it out: appended,
 * started over, verified; how it is put in place is each one's own.
 */
export abstract class WrittenFile {
  protected readonly writer: BlobWriter;

  constructor(writer: BlobWriter) {
    this.writer = writer;
  }

  /** The bytes written so far. */
  get written(): number {
    return this.writer.written;
  }

  /** Append bytes. @throws {IntegrityError} past its limit; the file system's error when the write fails. */
  write(chunk: Uint8Array): void {
    this.writer.write(chunk);
  }

  /** Start over from the first byte. */
  truncate(): void {
    this.writer.truncate();
  }

  /** @throws {IntegrityError} when what is written is not `expected`. */
  verify(expected: WriteExpectation): void {
    this.writer.verify(expected);
  }
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

/** How `writeFileAtomic` writes. */
export interface WriteFileOptions {
  /** The file's mode. @default 0o644 */
  mode?: number;
  /** Where the temp file is made (on the same file system as `dest`). @default the directory of `dest` */
  tempDir?: string;
  /** `fsync` before the rename. @default true */
  durable?: boolean;
}

/**
 * Replace `dest` with `data` whole: written to a new temp file (a random name, `O_EXCL | O_NOFOLLOW`), its mode set
 * and synced on its descriptor, renamed last. A link at `dest` is replaced, never followed; a link planted at any
 * temp name is never written through. The small files (records, memos, `index.json`, the lock file, a token) all
 * go this way.
 *
 * @throws {Error} the file system's error; nothing is left behind.
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { mkdtempSync, readFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { writeFileAtomic } from "./writer.ts";
 * const dest = join(mkdtempSync(join(tmpdir(), "writer-")), "note.json");
 * writeFileAtomic(dest, "{}\n");
 * assert.equal(readFileSync(dest, "utf8"), "{}\n");
 * ```
 */
export function writeFileAtomic(dest: string, data: string | Uint8Array, options: WriteFileOptions = {}): void {
  const temp = options.tempDir === undefined ? tempBeside(dest) : `${options.tempDir}/${tempName("file")}`;
  const writer = BlobWriter.create(temp);
  try {
    writer.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
  } catch (error) {
    writer.abort();
    throw error;
  }
  const result = writer.commit(dest, {}, { mode: options.mode ?? 0o644, durable: options.durable });
  if (result.status !== "committed") {
    writer.abort();
    throw result.status === "failed" ? result.error : new Error(result.reason);
  }
}

/**
 * Create the file `path` holding `text`, failing with `EEXIST` when anything (a link too) is there: a lock file.
 *
 * @throws {Error} the file system's error.
 */
export function createExclusive(path: string, text: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** Set a marker file's mtime, creating it without following a link (anything planted in its place is replaced). */
export function stampFile(path: string, now: number): void {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  let fd: number;
  try {
    fd = openSync(path, flags, 0o644);
  } catch {
    unlinkSync(path);
    fd = openSync(path, flags | constants.O_EXCL, 0o644);
  }
  try {
    futimesSync(fd, new Date(now), new Date(now));
  } finally {
    closeSync(fd);
  }
}

/**
 * Before a rename: what is at `temp` must be the file written through the descriptor whose stat is `own`, not one
 * swapped in meanwhile.
 *
 * @throws {IntegrityError} naming both paths when it is not.
 */
function checkOwnFile(own: Stats, temp: string, dest: string): void {
  const atPath = lstatSync(temp);
  if (own.dev !== atPath.dev || own.ino !== atPath.ino)
    throw new IntegrityError(`Cannot write "${dest}": another file took the place of "${temp}"`);
}

/**
 * Put a copy of the regular file `source` at `dest` (mode 0644): a copy-on-write clone where the file system can,
 * else a copy; with `link`, a hardlink to `source` itself. Made under a random name beside `dest`, then renamed.
 *
 * @throws {Error} the file system's error; nothing is left behind.
 */
export function copyFileAtomic(source: string, dest: string, options: { link?: boolean } = {}): void {
  const temp = tempBeside(dest);
  try {
    if (options.link) {
      linkSync(source, temp);
    } else {
      copyFileSync(source, temp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
      const fd = openSync(temp, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        fchmodSync(fd, 0o644);
        checkOwnFile(fstatSync(fd), temp, dest);
      } finally {
        closeSync(fd);
      }
    }
    renameSync(temp, dest);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // Never made, or renamed.
    }
    throw error;
  }
}

/**
 * Put `length` bytes of `source` from `offset` at `dest` (mode 0644, not fsynced) sharing the source's extents,
 * where the file system can clone a range (FICLONERANGE: btrfs, XFS with reflink) and `offset` falls on one of its
 * blocks: the whole blocks are cloned, a last partial block copied. Made under a random name beside `dest`, then
 * renamed. `false`, and nothing left behind, where it cannot (the caller copies instead).
 *
 * @throws {Error} the file system's error once the clone is made (the rest cannot be written, or the rename fails).
 */
export function cloneRangeAtomic(source: string, offset: number, length: number, dest: string): boolean {
  const block = blockSize(dirname(dest));
  if (block === undefined || offset % block !== 0 || length < block) return false;
  const head = Math.floor(length / block) * block;
  const temp = tempBeside(dest);
  const srcFd = openSync(source, constants.O_RDONLY | constants.O_NOFOLLOW);
  let fd: number | undefined;
  try {
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    UNFINISHED.add(temp);
    if (!cloneRange(fd, srcFd, offset, head)) {
      closeSync(fd);
      fd = undefined;
      unlinkSync(temp);
      UNFINISHED.delete(temp);
      return false;
    }
    const tail = Buffer.allocUnsafe(length - head);
    if (readSync(srcFd, tail, 0, tail.length, offset + head) !== tail.length)
      throw new IntegrityError(`Cannot write "${dest}": "${source}" ends before byte ${offset + length}`);
    for (let at = 0; at < tail.length; ) at += writeSync(fd, tail, at, tail.length - at, head + at);
    fchmodSync(fd, 0o644);
    checkOwnFile(fstatSync(fd), temp, dest);
    closeSync(fd);
    fd = undefined;
    renameSync(temp, dest);
    UNFINISHED.delete(temp);
    return true;
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(temp);
    } catch {
      // Never made.
    }
    UNFINISHED.delete(temp);
    throw error;
  } finally {
    closeSync(srcFd);
  }
}

/** The block size of the file system under `dir`, or `undefined` when it cannot be asked. */
function blockSize(dir: string): number | undefined {
  try {
    return Number(statfsSync(dir).bsize);
  } catch {
    return undefined;
  }
}

/** `ioctl(fd, FICLONERANGE, …)` through libc, loaded on first use; `false` where it fails or there is no libc. */
function cloneRange(fd: number, srcFd: number, offset: number, length: number): boolean {
  if (cloneRangeCall === undefined) cloneRangeCall = loadCloneRange();
  return cloneRangeCall !== false && cloneRangeCall(fd, srcFd, offset, length);
}

type CloneRange = (fd: number, srcFd: number, offset: number, length: number) => boolean;
/** The call, once loaded; `false` where it cannot be (no libc to load it from). */
let cloneRangeCall: CloneRange | false | undefined;

function loadCloneRange(): CloneRange | false {
  try {
    const { dlopen, FFIType, ptr } = require("bun:ffi") as typeof import("bun:ffi");
    const libc = dlopen("libc.so.6", {
      ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    });
    // struct file_clone_range { s64 src_fd; u64 src_offset; u64 src_length; u64 dest_offset; }
    return (fd, srcFd, offset, length) => {
      const range = new BigUint64Array([BigInt(srcFd), BigInt(offset), BigInt(length), 0n]);
      return libc.symbols.ioctl(fd, FICLONERANGE, ptr(range)) === 0;
    };
  } catch {
    return false;
  }
}

/** `_IOW(0x94, 13, struct file_clone_range)`: linux/fs.h. */
const FICLONERANGE = 0x4020940d;

/** Whether the file system under `dir` clones a file (FICLONE) instead of copying it: a probe made and removed. */
export function canClone(dir: string): boolean {
  const probe = `${dir}/${tempName("clone")}`;
  const clone = `${probe}.clone`;
  try {
    createExclusive(probe, "ocicache");
    copyFileSync(probe, clone, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    for (const path of [probe, clone]) {
      try {
        unlinkSync(path);
      } catch {
        // Never made.
      }
    }
  }
}

/** Whether a file can be made in `dir` now (`undefined`), else the file system's error: a probe made and removed. */
export function probeWritable(dir: string): Error | undefined {
  try {
    BlobWriter.create(`${dir}/${tempName("probe")}`).abort();
    return undefined;
  } catch (error) {
    return error as Error;
  }
}
