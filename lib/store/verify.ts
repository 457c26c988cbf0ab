/**
 * Re-hash every blob, check every recorded file of a tar layer against the
 * layer, report the corrupt ones and the references whose blobs are gone;
 * with `repair`, remove what is corrupt and drop the wrong records, so that
 * the next pull fetches or takes them out again.
 *
 * @module
 */

import { hashFile, type Digest } from "../oci/digest.ts";
import { takeInventory, type Inventory } from "./inventory.ts";
import { parseDerived, splitDerivedKey, updateIndex } from "./index-file.ts";
import { lockCleanup } from "./remove.ts";
import type { Store } from "./store.ts";
import { findTarMember } from "../oci/tar.ts";
import { DERIVED_ANNOTATION, REF_NAME_ANNOTATION } from "../oci/names.ts";

/** What `verifyCache` found. */
export interface VerifyReport {
  /** Blobs re-hashed. */
  checked: number;
  bytes: number;
  /**
   * Blobs whose content does not hash to their name (`actual`), or that are not regular files (a link, a directory).
   */
  corrupt: Array<{ digest: Digest; actual?: Digest; reason: "content" | "not a regular file"; size: number }>;
  /** Blobs a cached reference names that are not on disk. */
  missing: Array<{ reference: string; digest: Digest }>;
  /** Records of a reference that name a blob for a file of a tar layer that the layer does not hold. */
  wrongFiles: Array<{ reference: string; layer: Digest; path: string; recorded: Digest; actual?: Digest }>;
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
    const corrupt: VerifyReport["corrupt"] = store
      .list()
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
    const wrongFiles = checkDerived(store, inventory);
    if (options.repair) {
      for (const blob of corrupt) store.remove(blob.digest);
      if (wrongFiles.length > 0) await dropDerived(store, wrongFiles);
    }
    const missing = inventory.units.flatMap((unit) => unit.missing.map((digest) => ({ reference: unit.name, digest })));
    return {
      checked: inventory.blobs.size,
      bytes,
      corrupt,
      missing,
      wrongFiles,
      repaired: options.repair === true,
      durationMs: Date.now() - started,
    };
  } finally {
    lock?.release();
  }
}

/** Take every recorded file out of its layer again (when the layer is cached) and compare. */
function checkDerived(store: Store, inventory: Inventory): VerifyReport["wrongFiles"] {
  const wrong: VerifyReport["wrongFiles"] = [];
  for (const unit of inventory.units) {
    if (unit.entry === undefined) continue;
    for (const [key, recorded] of Object.entries(parseDerived(unit.entry))) {
      const where = splitDerivedKey(key);
      const layer = where === undefined ? undefined : inventory.blobs.get(where.layer);
      if (where === undefined || layer === undefined) continue;
      const layerPath = store.blobPath(where.layer);
      let actual: Digest | undefined;
      try {
        const range = findTarMember(layerPath, where.path, layer.size);
        actual = range.size === recorded.size ? hashFile(layerPath, range.offset, range.size).digest : undefined;
      } catch {
        actual = undefined;
      }
      if (actual !== recorded.digest)
        wrong.push({
          reference: unit.name,
          layer: where.layer,
          path: where.path,
          recorded: recorded.digest,
          ...(actual !== undefined && { actual }),
        });
    }
  }
  return wrong;
}

/** Remove the wrong records from their entries in `index.json`. */
async function dropDerived(store: Store, wrong: VerifyReport["wrongFiles"]): Promise<void> {
  await updateIndex(store.root, (entries) =>
    entries.map((entry) => {
      const bad = new Set(
        wrong.filter((w) => w.reference === entry.annotations[REF_NAME_ANNOTATION]).map((w) => `${w.layer}:${w.path}`),
      );
      if (bad.size === 0) return entry;
      const kept = Object.fromEntries(Object.entries(parseDerived(entry)).filter(([key]) => !bad.has(key)));
      const { [DERIVED_ANNOTATION]: _dropped, ...annotations } = entry.annotations;
      return {
        ...entry,
        annotations:
          Object.keys(kept).length > 0 ? { ...annotations, [DERIVED_ANNOTATION]: JSON.stringify(kept) } : annotations,
      };
    }),
  );
}
