/**
 * The content-addressed store on disk: `blobs/sha256/<hex>`, read-only, never
 * touched once written; its last use is the mtime of `uses/<hex>` (rule 10:
 * a hit moves no mtime of a file handed out). A blob appears only by `rename` from the cache's own
 * `tmp/`, after its size and digest were checked (docs/ARCHITECTURE.md, rule 1). Nothing in
 * the directory is trusted to be what its name says: `tmp/` and `blobs/` must
 * be real directories of this user, no link is followed, and a blob that is
 * not a regular file is not there.
 *
 * @module
 */

import { lstatSync, mkdirSync, type Stats, statfsSync, unlinkSync } from "node:fs";
import { IntegrityError, isErrno } from "../errors.ts";
import { type Digest, type Expected, isDigest } from "../oci/digest.ts";
import { readFileBounded, readRange } from "../oci/read.ts";
import { describeFsError, lexists, listNames } from "./files.ts";
import { type CachePaths, cachePaths, OCI_LAYOUT, tempPath } from "./paths.ts";
import { BlobWriter, stampFile, type WriteResult, writeFileAtomic } from "./writer.ts";

/** Where a blob of an OCI image layout is (an `oci:DIR` read in place): the cache's own layout, at another root. */
export { blobPath as layoutBlobPath } from "./paths.ts";
export { OCI_LAYOUT };

/** A use within this long of the recorded one is not recorded again (one write a minute at most). */
export const USE_RESOLUTION_MS = 60_000;

/** A blob's size and last use (the newer of its write and its use marker). */
export interface BlobStat {
  size: number;
  lastUseMs: number;
}

/** One entry of `blobs/sha256/`: a blob, or something planted there that is not a regular file. */
export interface BlobEntry extends BlobStat {
  digest: Digest;
  /** Whether it is a regular file; anything else is never served and counts as corrupt. */
  regular: boolean;
}

/**
 * The blob store of one cache directory.
 *
 * @example
 * ```ts
 * import { Store } from "./store.ts";
 * import { digestOf } from "../oci/digest.ts";
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
  /** Every path of its layout. */
  readonly paths: CachePaths;
  #trusted = true;

  constructor(root: string) {
    this.root = root;
    this.paths = cachePaths(root);
  }

  /** Downloads in progress and locks; never read as content. */
  get tmpDir(): string {
    return this.paths.tmpDir;
  }

  /**
   * Create the layout (`oci-layout`, `blobs/sha256/`, `tmp/`, `uses/`, `outputs/`, `refs/`) where missing,
   * and check that its directories are real directories owned by this user.
   * A cache that fails the check is neither read nor written.
   *
   * @returns `undefined` when the cache is usable, else why it is not.
   */
  init(): string | undefined {
    // Checked first: a cache laid out already (every hit) creates nothing, and a planted link gets no mkdir through it.
    const checked = this.#checkDirectories();
    if (checked.untrusted !== undefined) return checked.untrusted;
    if (checked.complete && lexists(this.paths.layoutFile)) return undefined;
    try {
      mkdirSync(this.paths.blobDir, { recursive: true });
      mkdirSync(this.paths.tmpDir, { recursive: true });
      mkdirSync(this.paths.usesDir, { recursive: true });
      mkdirSync(this.paths.outputsDir, { recursive: true });
      mkdirSync(this.paths.refsDir, { recursive: true });
    } catch (error) {
      return this.#checkDirectories().untrusted ?? describeFsError(error);
    }
    const untrusted = this.#checkDirectories().untrusted;
    if (untrusted !== undefined) return untrusted;
    try {
      writeFileAtomic(this.paths.layoutFile, OCI_LAYOUT, { tempDir: this.paths.tmpDir });
    } catch (error) {
      return describeFsError(error);
    }
    return undefined;
  }

  /** Whether the cache's directories passed the check of `init()`: else it holds nothing. */
  get trusted(): boolean {
    return this.#trusted;
  }

  /** The path of a blob, whether or not it is there. */
  blobPath(digest: Digest): string {
    return this.paths.blob(digest);
  }

  /** The size of a cached blob: `undefined` when absent, or when what is there is not a regular file. */
  stat(digest: Digest): { size: number } | undefined {
    const stat = this.#lstatBlob(digest);
    return stat === undefined ? undefined : { size: stat.size };
  }

  /** The size and last use of a cached blob, for cleanup (one more `lstat` than `stat()`, of its use marker). */
  usage(digest: Digest): BlobStat | undefined {
    const stat = this.#lstatBlob(digest);
    return stat === undefined ? undefined : { size: stat.size, lastUseMs: this.#lastUse(digest, stat.mtimeMs) };
  }

  #lstatBlob(digest: Digest): Stats | undefined {
    if (!this.#trusted) return undefined;
    try {
      const stat = lstatSync(this.blobPath(digest));
      return stat.isFile() ? stat : undefined;
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR")) return undefined;
      throw error;
    }
  }

  /** Every entry of `blobs/sha256/` named by a digest, regular files or not. */
  list(): BlobEntry[] {
    if (!this.#trusted) return [];
    const entries: BlobEntry[] = [];
    // The markers there are, read at once: a blob without one costs no failed lstat.
    const marked = new Set(listNames(this.paths.usesDir));
    for (const name of listNames(this.paths.blobDir)) {
      const digest = `sha256:${name}`;
      if (!isDigest(digest)) continue;
      try {
        const stat = lstatSync(this.paths.blob(digest));
        entries.push({
          digest,
          size: stat.size,
          lastUseMs: marked.has(name) ? this.#lastUse(digest, stat.mtimeMs) : stat.mtimeMs,
          regular: stat.isFile(),
        });
      } catch {
        // Removed meanwhile.
      }
    }
    return entries;
  }

  /**
   * Record that a blob was used now, on its marker in `uses/` (never on the
   * blob, never through a link), at most once a minute; a read-only cache is
   * left as it is.
   */
  touch(digest: Digest): void {
    if (!this.#trusted) return;
    const path = this.paths.use(digest);
    const now = Date.now();
    try {
      const marker = lstatSync(path);
      if (marker.isFile() && now - marker.mtimeMs < USE_RESOLUTION_MS) return;
    } catch {
      // No marker yet: made below.
    }
    try {
      stampFile(path, now);
    } catch {
      // A cache that cannot record the use still serves the blob.
    }
  }

  /** The newer of a blob's write and its use marker (a marker that is not a regular file counts for nothing). */
  #lastUse(digest: Digest, writtenMs: number): number {
    try {
      const marker = lstatSync(this.paths.use(digest));
      return marker.isFile() ? Math.max(writtenMs, marker.mtimeMs) : writtenMs;
    } catch {
      return writtenMs;
    }
  }

  /** The bytes free for this user on the cache's file system, or `undefined` when it cannot be asked. */
  freeBytes(): number | undefined {
    try {
      const stats = statfsSync(this.paths.blobDir);
      return Number(stats.bavail) * Number(stats.bsize);
    } catch {
      return undefined;
    }
  }

  /**
   * The bytes of a small cached blob (a manifest), or `undefined` when it is
   * absent, not a regular file, or larger than `limit`.
   */
  readBytes(digest: Digest, limit: number): Uint8Array | undefined {
    if (!this.#trusted) return undefined;
    try {
      return readFileBounded(this.blobPath(digest), limit);
    } catch (error) {
      if (error instanceof IntegrityError || isErrno(error, "ENOENT", "ENOTDIR", "ELOOP", "EINVAL")) return undefined;
      throw error;
    }
  }

  /** Remove a blob (a link in its place is removed itself, never its target); an absent blob is not an error. */
  remove(digest: Digest): void {
    try {
      unlinkSync(this.blobPath(digest));
    } catch (error) {
      if (!isErrno(error, "ENOENT")) throw error;
    }
    this.#removeMarker(digest);
  }

  /**
   * `remove`, its unlink on a worker thread: cleanup overlaps many (a disk that unlinks slowly does them faster).
   * `node:fs/promises` is loaded here, not by every start: loading it costs a start a few milliseconds.
   */
  async removeAsync(digest: Digest): Promise<void> {
    const { unlink } = await import("node:fs/promises");
    try {
      await unlink(this.blobPath(digest));
    } catch (error) {
      if (!isErrno(error, "ENOENT")) throw error;
    }
    this.#removeMarker(digest);
  }

  #removeMarker(digest: Digest): void {
    try {
      unlinkSync(this.paths.use(digest));
    } catch {
      // No marker, or one that is not ours to remove: it records nothing once the blob is gone.
    }
  }

  /**
   * Store `length` bytes of a file from `offset` as a blob of its own, named
   * by the digest computed while copying (a file inside a tar layer).
   */
  putRange(source: string, offset: number, length: number): WriteResult {
    let writer: BlobWriter;
    try {
      writer = BlobWriter.create(tempPath(this.root, "range"), { limit: length });
    } catch (error) {
      return { status: "skipped", reason: describeFsError(error) };
    }
    try {
      readRange(source, offset, length, (chunk) => writer.write(chunk));
    } catch (error) {
      writer.abort();
      return { status: "failed", error: error as Error };
    }
    const result = writer.commit(this.blobPath(writer.digest()), { size: length });
    if (result.status !== "committed") writer.abort();
    return result;
  }

  /** Write bytes as one blob; they are checked against `expected` before the rename. */
  putBytes(expected: Expected, bytes: Uint8Array): WriteResult {
    let writer: BlobWriter;
    try {
      writer = BlobWriter.create(tempPath(this.root, "blob"), { limit: expected.size });
    } catch (error) {
      return { status: "skipped", reason: describeFsError(error) };
    }
    try {
      writer.write(bytes);
    } catch (error) {
      writer.abort();
      return { status: "failed", error: error as Error };
    }
    const result = writer.commit(this.blobPath(expected.digest), expected);
    if (result.status !== "committed") writer.abort();
    return result;
  }

  /**
   * `tmp/`, `blobs/`, `blobs/sha256/`, `uses/`, `outputs/` and `refs/` must be directories of this user, not links to
   * elsewhere; `complete` when all of them are there.
   */
  #checkDirectories(): { untrusted?: string; complete: boolean } {
    let complete = true;
    for (const [dir, name] of [
      [this.paths.tmpDir, "tmp/"],
      [this.paths.blobsDir, "blobs/"],
      [this.paths.blobDir, "blobs/sha256/"],
      [this.paths.usesDir, "uses/"],
      [this.paths.outputsDir, "outputs/"],
      [this.paths.refsDir, "refs/"],
    ] as const) {
      const problem = directoryProblem(dir);
      if (problem === "absent") complete = false;
      else if (problem !== undefined) {
        this.#trusted = false;
        return { untrusted: `its ${name} ${problem}; the cache is not used`, complete: false };
      }
    }
    return { complete };
  }
}

/** What is wrong with a directory the cache relies on; `undefined` when it is fine. */
function directoryProblem(dir: string): string | undefined {
  const uid = process.getuid?.();
  try {
    const stat = lstatSync(dir);
    if (stat.isSymbolicLink()) return "is a symbolic link";
    if (!stat.isDirectory()) return "is not a directory";
    if (uid !== undefined && stat.uid !== uid) return `belongs to another user (uid ${stat.uid})`;
    return undefined;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return "absent";
    return `cannot be checked (${describeFsError(error)})`;
  }
}
