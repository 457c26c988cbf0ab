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
 * @module
 */

import { lstatSync } from "node:fs";
import { join } from "node:path";
import { digestHex, digestOf } from "../oci/digest.ts";
import { REF_NAME_ANNOTATION } from "../oci/names.ts";
import { readSmallJson, removeEntriesUnless, replaceSmallFile } from "./files.ts";
import { findEntry, isIndexEntry, readIndex, type IndexEntry } from "./index-file.ts";
import type { Store } from "./store.ts";

/** The memo of one name: the `index.json` it was read from, and the entry there (`null`: none). */
interface Memo {
  index: string;
  name: string;
  entry: IndexEntry | null;
}

/** The largest memo read: one entry, its derived files included. */
const MAX_MEMO_BYTES = 1024 * 1024;

/**
 * The entry of `index.json` whose ref name is `name`, if any.
 *
 * @example
 * ```ts
 * import { lookupEntry } from "./lookup.ts";
 * import { Store } from "./store.ts";
 * console.log(lookupEntry(new Store("/tmp/ocicache-example"), "docker.io/library/alpine:latest"));
 * ```
 */
export function lookupEntry(store: Store, name: string): IndexEntry | undefined {
  const index = indexIdentity(store);
  if (index === undefined) return undefined;
  const path = memoPath(store, name);
  if (store.trusted) {
    const memo = readMemo(path);
    if (memo !== undefined && memo.index === index && memo.name === name) return memo.entry ?? undefined;
  }
  const entry = findEntry(readIndex(store.root), name);
  if (store.trusted) writeMemo(store, path, { index, name, entry: entry ?? null });
  return entry;
}

/** Remove the memos of an `index.json` that has been rewritten since: they would be read again anyway. */
export function removeStaleMemos(store: Store): void {
  if (!store.trusted) return;
  const index = indexIdentity(store);
  removeEntriesUnless(store.paths.refsDir, (_, path) => index !== undefined && readMemo(path)?.index === index);
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

function memoPath(store: Store, name: string): string {
  return join(store.paths.refsDir, digestHex(digestOf(name)));
}

function readMemo(path: string): Memo | undefined {
  const memo = readSmallJson(path, MAX_MEMO_BYTES) as Partial<Memo> | undefined;
  if (typeof memo?.index !== "string" || typeof memo.name !== "string") return undefined;
  if (memo.entry === null) return memo as Memo;
  // A memo names its reference: one planted for another name, or malformed, is not used.
  if (!isIndexEntry(memo.entry) || memo.entry.annotations[REF_NAME_ANNOTATION] !== memo.name) return undefined;
  return memo as Memo;
}

function writeMemo(store: Store, path: string, memo: Memo): void {
  try {
    replaceSmallFile(store.root, "ref", path, JSON.stringify(memo));
  } catch {
    // Without a memo, the next lookup reads index.json whole: slower, never wrong.
  }
}
