/**
 * One reference's entry of `index.json` without reading all of it, so that a
 * hit costs the same with ten thousand references cached as with one.
 * `refs/<sha256 of the name>` holds the entry as last read, with the identity
 * of the `index.json` it was read from (inode, size, mtime). While
 * `index.json` is that same file, the memo is its entry; once `index.json`
 * has been rewritten, the whole index is read once and the memo renewed.
 * `index.json` stays the one truth (and a valid OCI image layout index):
 * `refs/` is a memo that can always be thrown away.
 *
 * The memo also remembers what a pull of the reference came to, for each
 * choice of platform and files (`PullMemo`): the manifest, the blobs
 * and the files. Its entry names the digest, and every manifest and blob is
 * content-addressed, so a remembered image stays true while the entry does;
 * a hit then reads no manifest.
 *
 * @module
 */

import { lstatSync } from "node:fs";
import { type Digest, isDigest } from "../oci/digest.ts";
import { isImageFileName } from "../oci/files.ts";
import { REF_NAME_ANNOTATION } from "../oci/names.ts";
import { readSmallJson, removeEntriesUnless } from "./files.ts";
import { asIndexEntry, findEntry, type IndexEntry, readIndex } from "./index-file.ts";
import type { Store } from "./store.ts";
import { writeFileAtomic } from "./writer.ts";

/** The memo of one name: the `index.json` it was read from, the entry there (`null`: none), images pulled by choice. */
interface Memo {
  index: string;
  name: string;
  entry: IndexEntry | null;
  images?: Record<string, PullMemo>;
}

/** A blob by digest, with its size. */
export interface SizedBlob {
  digest: Digest;
  size: number;
}

/** What a pull of one reference, with one choice of platform and files, came to. */
export interface PullMemo {
  /** The manifests a walk reads: the index, when the reference names one, then the platform's image manifest. */
  manifests: Digest[];
  /** The chosen platform, when the reference names an index. */
  platform?: Record<string, string>;
  /** Blobs kept by their descriptors (the config, the layers of the files): each must still have its size. */
  blobs: SizedBlob[];
  /** The files handed out, each a blob of the cache. */
  files: Array<SizedBlob & { role: string; name: string }>;
}

/** The largest memo read: one entry, its derived files and remembered images included. */
const MAX_MEMO_BYTES = 1024 * 1024;
/** The most choices remembered for one reference; the oldest goes first. */
const MAX_IMAGES = 8;

/**
 * The entry of `index.json` whose ref name is `name`, if any.
 *
 * @example
 * ```ts
 * import { lookupEntry } from "./refs.ts";
 * import { Store } from "./store.ts";
 * console.log(lookupEntry(new Store("/tmp/ocicache-example"), "docker.io/library/alpine:latest"));
 * ```
 */
export function lookupEntry(store: Store, name: string): IndexEntry | undefined {
  return lookupReference(store, name).entry;
}

/** One name's entry of `index.json`, and what pulls of it came to, by choice, as the memo remembers them. */
export interface KnownReference {
  entry?: IndexEntry;
  /** As read: `readPullMemo` takes one out only in the shape `writePullMemo` writes. */
  images: Record<string, unknown>;
}

/**
 * The entry of `index.json` whose ref name is `name`, if any, with the images its memo remembers: one read of the
 * memo while `index.json` is the file it was made from.
 *
 * @example
 * ```ts
 * import { lookupReference } from "./refs.ts";
 * import { Store } from "./store.ts";
 * console.log(lookupReference(new Store("/tmp/ocicache-example"), "docker.io/library/alpine:latest").entry);
 * ```
 */
export function lookupReference(store: Store, name: string, options: { verify?: boolean } = {}): KnownReference {
  const index = indexIdentity(store);
  if (index === undefined) return { images: {} };
  const path = store.paths.ref(name);
  // Under --verify no memo is taken on trust: the entry is read from index.json, and the memo made again from it.
  const memo = store.trusted && !options.verify ? readMemo(path) : undefined;
  if (memo?.name === name && memo.index === index)
    return { ...(memo.entry !== null && { entry: memo.entry }), images: memo.images ?? {} };
  const entry = findEntry(readIndex(store.root), name);
  if (store.trusted) writeMemo(store, path, { index, name, entry: entry ?? null });
  return { ...(entry !== undefined && { entry }), images: {} };
}

/**
 * The image a pull with `choice` came to while the reference named `digest`, if its memo remembers one.
 *
 * @example
 * ```ts
 * import { lookupReference, readPullMemo } from "./refs.ts";
 * import { Store } from "./store.ts";
 * const known = lookupReference(new Store("/tmp/ocicache-example"), "127.0.0.1:5000/unikraft/nginx:1.25");
 * console.log(readPullMemo(known, `sha256:${"a".repeat(64)}`, "{}"));
 * ```
 */
export function readPullMemo(known: KnownReference, digest: Digest, choice: string): PullMemo | undefined {
  if (known.entry?.digest !== digest) return undefined;
  const image = known.images[choice];
  return isPullMemo(image) ? image : undefined;
}

/** Remember what a pull of `name` with `choice` came to, while `name` names `digest` in `index.json`. */
export function writePullMemo(store: Store, name: string, digest: Digest, choice: string, image: PullMemo): void {
  if (lookupEntry(store, name)?.digest !== digest) return;
  const path = store.paths.ref(name);
  const memo = readMemo(path);
  if (memo?.name !== name || memo.entry?.digest !== digest) return;
  if (JSON.stringify(memo.images?.[choice]) === JSON.stringify(image)) return;
  const images = Object.entries(memo.images ?? {}).filter(([key]) => key !== choice);
  images.push([choice, image]);
  writeMemo(store, path, { ...memo, images: Object.fromEntries(images.slice(-MAX_IMAGES)) });
}

/** Remove the memos of an `index.json` that has been rewritten since: they would be read again anyway. */
export function removeStaleMemos(store: Store): void {
  if (!store.trusted) return;
  const index = indexIdentity(store);
  removeEntriesUnless(store.paths.refsDir, (_, path) => index !== undefined && readMemo(path)?.index === index);
}

/**
 * Remove every memo: `verify` checks what `index.json` records, not what a memo remembers, so none it did not check
 * is used after it. Each reference's next hit reads its entry and manifests again.
 */
export function removeAllMemos(store: Store): void {
  if (store.trusted) removeEntriesUnless(store.paths.refsDir, () => false);
}

/** The identity of the `index.json` there is now; `undefined` when there is none (or it is not a regular file). */
function indexIdentity(store: Store): string | undefined {
  try {
    const stat = lstatSync(store.paths.indexFile);
    return stat.isFile() ? `${stat.ino}:${stat.size}:${stat.mtimeMs}` : undefined;
  } catch {
    return undefined;
  }
}

function readMemo(path: string): Memo | undefined {
  const memo = readSmallJson(path, MAX_MEMO_BYTES) as Partial<Memo> | undefined;
  if (typeof memo?.index !== "string" || typeof memo.name !== "string") return undefined;
  if (memo.entry === null) return memo as Memo;
  // A memo names its reference: one planted for another name, or malformed, is not used.
  const entry = asIndexEntry(memo.entry);
  if (entry === undefined || entry.annotations[REF_NAME_ANNOTATION] !== memo.name) return undefined;
  return { ...(memo as Memo), entry };
}

/** Whether a pull memo read back from the cache directory has the shape `writePullMemo` writes. */
function isPullMemo(value: unknown): value is PullMemo {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
  const sized = (blob: unknown) =>
    isObject(blob) && isDigest(blob.digest) && Number.isSafeInteger(blob.size) && (blob.size as number) >= 0;
  if (!isObject(value)) return false;
  const { manifests, platform, blobs, files } = value;
  return (
    Array.isArray(manifests) &&
    manifests.length > 0 &&
    manifests.every(isDigest) &&
    (platform === undefined ||
      (isObject(platform) &&
        Object.entries(platform).every(([k, v]) => PLATFORM_KEYS.includes(k) && typeof v === "string"))) &&
    Array.isArray(blobs) &&
    blobs.every(sized) &&
    Array.isArray(files) &&
    files.every((f) => sized(f) && isImageFileName(f.role, f.name))
  );
}

const PLATFORM_KEYS = ["os", "architecture", "variant", "plat"];

function writeMemo(store: Store, path: string, memo: Memo): void {
  try {
    writeFileAtomic(path, JSON.stringify(memo), { tempDir: store.tmpDir, durable: false });
  } catch {
    // Without a memo, the next lookup reads index.json whole: slower, never wrong.
  }
}
