/**
 * Writing files safely: a temp file beside its destination, renamed into
 * place only when complete, with its owner's pid in its name; and the small
 * file helpers the store and the outputs share.
 *
 * @module
 */

import { chmodSync, closeSync, fdatasync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { SizeMismatchError } from "./errors.ts";

/**
 * The outcome of writing a blob: only `committed` means the cache has it.
 * `skipped` and `failed` say why it does not, and the pull goes on without it.
 */
export type WriteResult =
  | { status: "committed"; path: string }
  | { status: "skipped"; reason: string }
  | { status: "failed"; error: Error };

/**
 * One file being written beside its destination: `commit()` renames it into
 * place with `mode`, `abort()` removes it. A failed commit leaves the
 * temporary file for the caller to use or abort. A resumable writer appends
 * to what its file already holds and `close()` keeps it for the next try;
 * any other writer's file is removed if the process exits first.
 */
export class BlobWriter {
  /** The temporary file. */
  readonly tmpPath: string;
  readonly #finalPath: string;
  readonly #size: number;
  readonly #mode: number;
  #fd: number | undefined;
  #written = 0;
  #flushedAt = 0;
  #flushing = false;

  readonly #resumable: boolean;

  /** @throws {Error} the file system's error when the temporary file cannot be created. */
  constructor(tmpPath: string, finalPath: string, size: number, mode: number, options: { resumable?: boolean } = {}) {
    this.tmpPath = tmpPath;
    this.#finalPath = finalPath;
    this.#size = size;
    this.#mode = mode;
    this.#resumable = options.resumable === true;
    this.#fd = openSync(tmpPath, this.#resumable ? "a" : "wx", 0o644);
    if (this.#resumable) this.#written = fstatSync(this.#fd).size;
    else UNFINISHED.add(this.tmpPath);
  }

  /** Bytes written so far. */
  get written(): number {
    return this.#written;
  }

  /**
   * Append a chunk.
   *
   * @throws {Error} the file system's error (ENOSPC, EIO); the writer is then aborted by its owner.
   */
  write(chunk: Uint8Array): void {
    if (this.#fd === undefined) throw new TypeError("BlobWriter is closed");
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
    this.#written = 0;
  }

  /** Close and keep the file: a resumable download that the next try continues. */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /**
   * Flush, set the mode and rename into place. The caller has verified the
   * bytes; the size is checked again on the renamed file.
   */
  commit(): WriteResult {
    if (this.#fd === undefined) throw new TypeError("BlobWriter is closed");
    try {
      if (this.#written !== this.#size) throw new SizeMismatchError(this.#size, this.#written);
      fsyncSync(this.#fd);
      closeSync(this.#fd);
      this.#fd = undefined;
      chmodSync(this.tmpPath, this.#mode);
      renameSync(this.tmpPath, this.#finalPath);
      UNFINISHED.delete(this.tmpPath);
      const fd = openSync(this.#finalPath, "r");
      try {
        const size = fstatSync(fd).size;
        if (size !== this.#size) throw new SizeMismatchError(this.#size, size);
      } finally {
        closeSync(fd);
      }
      return { status: "committed", path: this.#finalPath };
    } catch (error) {
      return { status: "failed", error: error as Error };
    }
  }

  /** Close and remove the temporary file. */
  abort(): void {
    if (this.#fd !== undefined) {
      try {
        closeSync(this.#fd);
      } catch {
        // Already unusable; the file is removed next.
      }
      this.#fd = undefined;
    }
    UNFINISHED.delete(this.tmpPath);
    try {
      unlinkSync(this.tmpPath);
    } catch {
      // Gone already, or on a file system that refuses; cleanup removes stale temp files.
    }
  }
}

/** Bytes written between two background flushes of a large file. */
const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;

/** Temp files of writers that are neither committed nor aborted, and cannot be resumed. */
const UNFINISHED = new Set<string>();

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

/** A temp file name in the cache's `tmp/` that names its owner: `<prefix>.<pid>.<random>.part`. */
export function tempName(prefix: string): string {
  return `${prefix}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.part`;
}

/** The pid that owns a temp file named by `tempName`, if the name is one. */
export function tempOwner(name: string): number | undefined {
  const fields = name.split(".");
  const pid = Number(fields.at(-3));
  return fields.at(-1) === "part" && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Write a whole chunk, looping over short writes; `onWritten` sees each
 * write so that a failure midway still tells how much landed.
 */
export function writeAll(fd: number, chunk: Uint8Array, onWritten?: (n: number) => void): number {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const n = writeSync(fd, chunk, offset, chunk.byteLength - offset);
    offset += n;
    onWritten?.(n);
  }
  return offset;
}

/** Read `length` bytes of a file from `offset`, in 1 MiB chunks (one buffer, reused). */
export function copyRange(source: string, offset: number, length: number, onChunk: (chunk: Uint8Array) => void): void {
  const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(length, 1)));
  for (const n of readInto(source, offset, length, buffer)) onChunk(buffer.subarray(0, n));
}

/** The first `length` bytes of a file, in 1 MiB chunks of their own (a consumer may keep them). */
export function* fileChunks(source: string, length: number): Generator<Uint8Array> {
  const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(length, 1)));
  for (const n of readInto(source, 0, length, buffer)) yield buffer.slice(0, n);
}

/** Fill `buffer` from the file again and again, yielding how many bytes each time. */
function* readInto(source: string, offset: number, length: number, buffer: Buffer): Generator<number> {
  const fd = openSync(source, "r");
  try {
    for (let done = 0; done < length;) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
      if (n === 0) throw new SizeMismatchError(length, done, `range of "${source}"`);
      yield n;
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

const COPY_CHUNK_BYTES = 1024 * 1024;

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
  };
  return (code !== undefined ? reasons[code] : undefined) ?? (error instanceof Error ? error.message : String(error));
}
