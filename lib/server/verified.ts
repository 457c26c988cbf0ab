/**
 * Cached blobs checked before the mirror sends them from disk: hashed once
 * per server process (once for all the clients asking at once), again when
 * the file changes; a damaged one is dropped and counted.
 *
 * @module
 */

import { lstatSync } from "node:fs";
import { type Digest, hashFileAsync } from "../oci/digest.ts";
import type { MirrorDeps } from "./mirror-deps.ts";

/**
 * Whether a cached blob is what its name says: hashed the first time this
 * process serves it (one hash for every client asking at once), and again
 * whenever the file changed (inode, size or ctime). A damaged one is dropped
 * and counted.
 */
export async function verifyCached(deps: MirrorDeps, digest: Digest, path: string): Promise<boolean> {
  const identity = fileIdentity(path);
  if (identity !== undefined && verifiedFiles.get(digest) === identity) return true;
  let check = verifying.get(path);
  if (check === undefined) {
    check = hashFileAsync(path).then(
      (actual) => actual === digest,
      () => false,
    );
    verifying.set(path, check);
    const forget = () => verifying.delete(path);
    check.then(forget, forget);
  }
  if (await check) {
    if (identity !== undefined) {
      if (verifiedFiles.size >= MAX_VERIFIED_FILES) verifiedFiles.clear();
      verifiedFiles.set(digest, identity);
    }
    return true;
  }
  if (fileIdentity(path) === identity) dropDamaged(deps, digest);
  return false;
}

/** Cached blobs this process has hashed, by digest, with the identity of the file then. */
const verifiedFiles = new Map<Digest, string>();
/** Hashes of cached blobs in progress, by path. */
const verifying = new Map<string, Promise<boolean>>();
/** Files remembered at most; past it the memory starts over. */
const MAX_VERIFIED_FILES = 10_000;

/** What tells a file from the same file changed or replaced: inode, size and the time of its last change. */
function fileIdentity(path: string): string | undefined {
  try {
    const stat = lstatSync(path);
    return `${stat.dev}:${stat.ino}:${stat.size}:${stat.ctimeMs}`;
  } catch {
    return undefined;
  }
}

/** A cached blob failed verification: drop it, so that it is fetched again. */
function dropDamaged(deps: MirrorDeps, digest: Digest): void {
  deps.metrics.damagedBlobsDropped++;
  deps.cache.warn(`Dropping cached blob "${digest}": its content does not match its digest`);
  try {
    deps.cache.store.remove(digest);
  } catch (error) {
    deps.cache.noteUnwritable(error);
  }
}
