/**
 * Re-hash every blob, report the corrupt ones and the references whose blobs
 * are gone; with `repair`, remove what is corrupt so that the next pull
 * fetches it again.
 *
 * @module
 */

import { hashFile, type Digest } from "./digest.ts";
import { takeInventory } from "./inventory.ts";
import { lockCleanup } from "./remove.ts";
import type { Store } from "./store.ts";

/** What `verifyCache` found. */
export interface VerifyReport {
  /** Blobs re-hashed. */
  checked: number;
  bytes: number;
  /** Blobs whose content does not hash to their name (`actual`), or that are not regular files (a link, a directory). */
  corrupt: Array<{ digest: Digest; actual?: Digest; reason: "content" | "not a regular file"; size: number }>;
  /** Blobs a cached reference names that are not on disk. */
  missing: Array<{ reference: string; digest: Digest }>;
  /** Whether the corrupt blobs were removed. */
  repaired: boolean;
  durationMs: number;
}

/**
 * Verify the whole cache.
 *
 * @example
 * ```ts
 * import { verifyCache } from "./verify.ts";
 * import { Store } from "./store.ts";
 * const report = await verifyCache(new Store("/tmp/ocicache-example"));
 * console.log(report.corrupt.length === 0 ? "clean" : "corrupt");
 * ```
 */
export async function verifyCache(store: Store, options: { repair?: boolean } = {}): Promise<VerifyReport> {
  const started = Date.now();
  const lock = options.repair ? await lockCleanup(store) : undefined;
  try {
    const inventory = takeInventory(store);
    const corrupt: VerifyReport["corrupt"] = store.list()
      .filter((entry) => !entry.regular)
      .map((entry) => ({ digest: entry.digest, reason: "not a regular file" as const, size: 0 }));
    let bytes = 0;
    for (const blob of inventory.blobs.values()) {
      let actual: Digest;
      try {
        actual = hashFile(store.blobPath(blob.digest)).digest;
      } catch {
        continue;
      }
      bytes += blob.size;
      if (actual !== blob.digest) corrupt.push({ digest: blob.digest, actual, reason: "content", size: blob.size });
    }
    if (options.repair) for (const blob of corrupt) store.remove(blob.digest);
    const missing = inventory.units.flatMap((unit) => unit.missing.map((digest) => ({ reference: unit.name, digest })));
    return { checked: inventory.blobs.size, bytes, corrupt, missing, repaired: options.repair === true, durationMs: Date.now() - started };
  } finally {
    lock?.release();
  }
}
