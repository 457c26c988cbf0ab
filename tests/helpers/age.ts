/**
 * Move a cached blob's last use into the past, as cleanup tests need: both
 * its write time (the blob's mtime) and its use marker, when it has one.
 *
 * @module
 */

import { existsSync, utimesSync } from "node:fs";
import type { Digest } from "../../lib/oci/digest.ts";
import { blobPath, cachePaths } from "../../lib/store/paths.ts";

/** Set the last use of the blob `digest` of the cache at `root` to `when`. */
export function setLastUse(root: string, digest: Digest, when: Date): void {
  utimesSync(blobPath(root, digest), when, when);
  const marker = cachePaths(root).use(digest);
  if (existsSync(marker)) utimesSync(marker, when, when);
}
