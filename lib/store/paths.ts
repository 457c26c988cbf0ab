/**
 * The on-disk layout of a cache (and of any OCI image layout): the only
 * module that knows where a blob, a use marker, a record, a memo, a partial
 * download, a lock or a temp file lives. Every other module asks here; none joins `blobs/sha256` or `tmp/`
 * itself.
 *
 * ```
 * <root>/oci-layout              {"imageLayoutVersion":"1.0.0"}
 * <root>/index.json              one descriptor per cached reference
 * <root>/blobs/sha256/<hex>      verified, read-only content; its mtime is when it was written
 * <root>/uses/<hex>              empty; its mtime is the blob's last use (never the blob's own mtime)
 * <root>/outputs/<hex>           what was last written to an output path (hex: sha256 of that path)
 * <root>/refs/<hex>              a reference's index.json entry and what its pulls came to (hex: sha256 of the name)
 * <root>/tmp/<hex>.partial       a resumable download, owned by whoever holds <hex>.lock
 * <root>/tmp/<hex>.lock          the cross-process lock of that download
 * <root>/tmp/<name>.<pid>.<random>.part   any other file being written, named for its owner
 * <root>/tmp/index.json.lock, gc.lock, gc.stamp
 * ```
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { type Digest, digestHex, digestOf } from "../oci/digest.ts";

/** The content of the `oci-layout` file (image-spec, image-layout.md). */
export const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';

/** The paths of one cache directory (or OCI image layout) at `root`. */
export interface CachePaths {
  root: string;
  /** `oci-layout` */
  layoutFile: string;
  /** `index.json` */
  indexFile: string;
  /** `blobs/` */
  blobsDir: string;
  /** `blobs/sha256/` */
  blobDir: string;
  /** `uses/`: one empty marker per used blob, whose mtime is its last use. */
  usesDir: string;
  /** `outputs/`: a record per output path of what was last written there. */
  outputsDir: string;
  /** A blob's path (a concatenation onto `blobDir`: `path.join` per blob costs a 100,000-blob walk dearly). */
  blob(digest: Digest): string;
  /** A blob's use marker in `usesDir`. */
  use(digest: Digest): string;
  /** `refs/`: per reference name, its `index.json` entry as last read (a memo; `index.json` is the truth). */
  refsDir: string;
  /** The memo of a reference name in `refsDir` (named by the sha256 of the name). */
  ref(name: string): string;
  /** The record of an output path in `outputsDir` (named by the sha256 of the absolute path). */
  output(path: string): string;
  /** `tmp/`: downloads in progress and locks; never read as content. */
  tmpDir: string;
  /** The lock around rewrites of `index.json`. */
  indexLock: string;
  /** The lock that keeps cleanups (and `rm`) apart. */
  cleanupLock: string;
  /** Its mtime is the start of the last automatic cleanup. */
  cleanupStamp: string;
}

/**
 * The fixed paths of a cache directory.
 *
 * @example
 * ```ts
 * import { cachePaths } from "./paths.ts";
 * console.log(cachePaths("/tmp/ocicache").blobDir); // /tmp/ocicache/blobs/sha256
 * ```
 */
export function cachePaths(root: string): CachePaths {
  const tmpDir = join(root, "tmp");
  const blobsDir = join(root, "blobs");
  const blobDir = join(blobsDir, "sha256");
  const usesDir = join(root, "uses");
  const outputsDir = join(root, "outputs");
  const refsDir = join(root, "refs");
  return {
    blob: (digest) => blobPath(root, digest),
    use: (digest) => `${usesDir}/${digestHex(digest)}`,
    ref: (name) => join(refsDir, digestHex(digestOf(name))),
    output: (path) => join(outputsDir, digestHex(digestOf(path))),
    root,
    layoutFile: join(root, "oci-layout"),
    indexFile: join(root, "index.json"),
    blobsDir,
    blobDir,
    usesDir,
    outputsDir,
    refsDir,
    tmpDir,
    indexLock: join(tmpDir, "index.json.lock"),
    cleanupLock: join(tmpDir, "gc.lock"),
    cleanupStamp: join(tmpDir, "gc.stamp"),
  };
}

/** Where the blob with this digest lives under `root` (a cache, or any OCI image layout), there or not. */
export function blobPath(root: string, digest: Digest): string {
  return `${root}/blobs/sha256/${digestHex(digest)}`;
}

/** The resumable partial download of a blob. */
export function partialPath(root: string, digest: Digest): string {
  return join(root, "tmp", `${digestHex(digest)}.partial`);
}

/** The lock of a blob's download, held by the process writing its partial file. */
export function downloadLockPath(root: string, digest: Digest): string {
  return join(root, "tmp", `${digestHex(digest)}.lock`);
}

/** A fresh temp file in the cache's `tmp/`, named for this process. */
export function tempPath(root: string, prefix: string): string {
  return join(root, "tmp", tempName(prefix));
}

/** A fresh hidden temp file beside `dest`, so that its `rename` stays on one file system. */
export function tempBeside(dest: string): string {
  return join(dirname(dest), `.${tempName(basename(dest))}`);
}

/** `<prefix>.<pid>.<random>.part`: the one temp-name scheme; the name tells who owns the file. */
export function tempName(prefix: string): string {
  const random = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex");
  return `${prefix}.${process.pid}.${random}.part`;
}

/** What an entry of `tmp/` is, by its name. */
export type TempEntry =
  | { kind: "partial"; lock: string }
  | { kind: "lock" }
  | { kind: "temp"; pid: number }
  | { kind: "cleanup" }
  | { kind: "unknown" };

/**
 * Classify a name found in `tmp/`, for cleanup.
 *
 * @example
 * ```ts
 * import { classifyTemp } from "./paths.ts";
 * console.log(classifyTemp("index.json.4242.k3j5.part")); // { kind: "temp", pid: 4242 }
 * ```
 */
export function classifyTemp(name: string): TempEntry {
  if (name === "gc.stamp" || name === "gc.lock") return { kind: "cleanup" };
  if (name.endsWith(".partial")) return { kind: "partial", lock: name.replace(/\.partial$/, ".lock") };
  if (name.endsWith(".lock")) return { kind: "lock" };
  const fields = name.split(".");
  const pid = Number(fields.at(-3));
  if (fields.at(-1) === "part" && Number.isInteger(pid) && pid > 0) return { kind: "temp", pid };
  return { kind: "unknown" };
}
