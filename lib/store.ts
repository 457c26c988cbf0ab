/**
 * The content-addressed store on disk: `blobs/sha256/<hex>`, read-only, whose
 * mtime is its last use. A blob appears only by `rename` from the cache's own
 * `tmp/`, after the caller verified every byte (DESIGN.md, rule 1).
 *
 * @module
 */

import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestHex, type Digest, type Expected } from "./digest.ts";
import { isErrno } from "./errors.ts";
import { BlobWriter, copyRange, describeFsError, tempName, writeAll, type WriteResult } from "./writer.ts";

/** The content of the `oci-layout` file (image-spec, image-layout.md). */
export const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';

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
