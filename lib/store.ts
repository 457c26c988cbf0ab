/**
 * The content-addressed store on disk: `blobs/sha256/<hex>`, read-only, whose
 * mtime is its last use. A blob appears only by `rename` from the cache's own
 * `tmp/`, after the caller verified every byte (DESIGN.md, rule 1).
 *
 * @module
 */

import { chmodSync, closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { digestHex, type Digest, type Expected } from "./digest.ts";
import { isErrno, SizeMismatchError } from "./errors.ts";

/** The content of the `oci-layout` file (image-spec, image-layout.md). */
export const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';

/**
 * The outcome of writing a blob: only `committed` means the cache has it.
 * `skipped` and `failed` say why it does not, and the pull goes on without it.
 */
export type WriteResult =
  | { status: "committed"; path: string }
  | { status: "skipped"; reason: string }
  | { status: "failed"; error: Error };

/** A blob's size and last use. */
export interface BlobStat {
  size: number;
  mtimeMs: number;
}

/**
 * The blob store of one cache directory.
 *
 * @example
 * ```ts
 * import { Store } from "./store.ts";
 * import { digestOf } from "./digest.ts";
 * const store = new Store("/tmp/ocicache-example");
 * store.init();
 * const bytes = new TextEncoder().encode("hello");
 * const result = store.putBytes({ digest: digestOf(bytes), size: bytes.length }, bytes);
 * console.log(result.status); // committed
 * ```
 */
export class Store {
  /** The cache directory. */
  readonly root: string;
  /** Downloads in progress and locks; never read as content. */
  readonly tmpDir: string;
  #blobDir: string;

  constructor(root: string) {
    this.root = root;
    this.tmpDir = join(root, "tmp");
    this.#blobDir = join(root, "blobs", "sha256");
  }

  /**
   * Create the layout (`oci-layout`, `blobs/sha256/`, `tmp/`) where missing.
   *
   * @returns `undefined` when the cache is writable, else why it is not.
   */
  init(): string | undefined {
    try {
      mkdirSync(this.#blobDir, { recursive: true });
      mkdirSync(this.tmpDir, { recursive: true });
      try {
        writeFileSync(join(this.root, "oci-layout"), OCI_LAYOUT, { flag: "wx" });
      } catch (error) {
        if (!isErrno(error, "EEXIST")) throw error;
      }
      return undefined;
    } catch (error) {
      return describeFsError(error);
    }
  }

  /** The path of a blob, whether or not it is there. */
  blobPath(digest: Digest): string {
    return join(this.#blobDir, digestHex(digest));
  }

  /** The size and last use of a cached blob, or `undefined` when absent. */
  stat(digest: Digest): BlobStat | undefined {
    try {
      const stat = statSync(this.blobPath(digest));
      return { size: stat.size, mtimeMs: stat.mtimeMs };
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR")) return undefined;
      throw error;
    }
  }

  /** Mark a blob as used now; a read-only cache is left as it is. */
  touch(digest: Digest): void {
    const now = new Date();
    try {
      utimesSync(this.blobPath(digest), now, now);
    } catch {
      // A cache that cannot record the use still serves the blob.
    }
  }

  /** The bytes of a small cached blob (a manifest), or `undefined` when absent. */
  readBytes(digest: Digest): Uint8Array | undefined {
    try {
      return readFileSync(this.blobPath(digest));
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR")) return undefined;
      throw error;
    }
  }

  /** Remove a blob; an absent blob is not an error. */
  remove(digest: Digest): void {
    try {
      unlinkSync(this.blobPath(digest));
    } catch (error) {
      if (!isErrno(error, "ENOENT")) throw error;
    }
  }

  /**
   * Start writing a blob in `tmp/`.
   *
   * @throws {Error} the file system's error when `tmp/` cannot take a file.
   */
  createWriter(expected: Expected): BlobWriter {
    const path = join(this.tmpDir, tempName(digestHex(expected.digest)));
    return new BlobWriter(path, this.blobPath(expected.digest), expected.size, 0o444);
  }

  /**
   * Store `length` bytes of a file from `offset` as a blob of its own,
   * named by the digest computed while copying (a file inside a tar layer).
   */
  putRange(source: string, offset: number, length: number): WriteResult & { digest?: Digest } {
    let tmpPath: string;
    let fd: number;
    try {
      tmpPath = join(this.tmpDir, tempName("range"));
      fd = openSync(tmpPath, "wx", 0o644);
    } catch (error) {
      return { status: "skipped", reason: describeFsError(error) };
    }
    try {
      const hasher = new Bun.CryptoHasher("sha256");
      copyRange(source, offset, length, (chunk) => {
        hasher.update(chunk);
        writeAll(fd, chunk);
      });
      fsyncSync(fd);
      closeSync(fd);
      fd = -1;
      const digest = `sha256:${hasher.digest("hex")}` as Digest;
      chmodSync(tmpPath, 0o444);
      renameSync(tmpPath, this.blobPath(digest));
      return { status: "committed", path: this.blobPath(digest), digest };
    } catch (error) {
      if (fd !== -1) closeSync(fd);
      try {
        unlinkSync(tmpPath);
      } catch {
        // Never created or already renamed.
      }
      return { status: "failed", error: error as Error };
    }
  }

  /** Write bytes already verified by the caller, as one blob. */
  putBytes(expected: Expected, bytes: Uint8Array): WriteResult {
    let writer: BlobWriter;
    try {
      writer = this.createWriter(expected);
    } catch (error) {
      return { status: "skipped", reason: describeFsError(error) };
    }
    try {
      writer.write(bytes);
    } catch (error) {
      writer.abort();
      return { status: "failed", error: error as Error };
    }
    const result = writer.commit();
    if (result.status !== "committed") writer.abort();
    return result;
  }
}

/**
 * One file being written beside its destination: `commit()` renames it into
 * place with `mode`, `abort()` removes it. A failed commit leaves the
 * temporary file for the caller to use or abort.
 */
export class BlobWriter {
  /** The temporary file. */
  readonly tmpPath: string;
  readonly #finalPath: string;
  readonly #size: number;
  readonly #mode: number;
  #fd: number | undefined;
  #written = 0;

  /** @throws {Error} the file system's error when the temporary file cannot be created. */
  constructor(tmpPath: string, finalPath: string, size: number, mode: number) {
    this.tmpPath = tmpPath;
    this.#finalPath = finalPath;
    this.#size = size;
    this.#mode = mode;
    this.#fd = openSync(tmpPath, "wx", 0o644);
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
    try {
      unlinkSync(this.tmpPath);
    } catch {
      // Gone already, or on a file system that refuses; cleanup removes stale temp files.
    }
  }
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

/** Read `length` bytes of a file from `offset`, in 1 MiB chunks. */
export function copyRange(source: string, offset: number, length: number, onChunk: (chunk: Uint8Array) => void): void {
  const fd = openSync(source, "r");
  const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(length, 1)));
  try {
    for (let done = 0; done < length;) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
      if (n === 0) throw new SizeMismatchError(length, done, `range of "${source}"`);
      onChunk(buffer.subarray(0, n));
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
