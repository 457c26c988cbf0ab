/**
 * Re-hash every blob, check every recorded file of a tar layer against the
 * layer, report the corrupt ones and the references whose blobs are gone;
 * with `repair`, remove what is corrupt and drop the wrong records, so that
 * the next pull fetches or takes them out again. The memos of `refs/` are
 * dropped either way: a hit uses nothing that verify did not check.
 *
 * @module
 */

import { closeSync } from "node:fs";
import { type Digest, hashFile } from "../oci/digest.ts";
import { DERIVED_ANNOTATION, REF_NAME_ANNOTATION } from "../oci/names.ts";
import { decompressedStream, openRegular, readAt } from "../oci/read.ts";
import { extractTarMembers, findTarMember } from "../oci/tar.ts";
import { parseDerived, splitDerivedKey, updateIndex } from "./index-file.ts";
import { type Inventory, takeInventory } from "./inventory.ts";
import { removeAllMemos } from "./refs.ts";
import { lockCleanup } from "./remove.ts";
import type { Store } from "./store.ts";

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
    const wrongFiles = await checkDerived(store, inventory);
    removeAllMemos(store);
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
async function checkDerived(store: Store, inventory: Inventory): Promise<VerifyReport["wrongFiles"]> {
  const wrong: VerifyReport["wrongFiles"] = [];
  const records = inventory.units.flatMap((unit) =>
    Object.entries(unit.entry === undefined ? {} : parseDerived(unit.entry)).flatMap(([key, recorded]) => {
      const where = splitDerivedKey(key);
      const layer = where === undefined ? undefined : inventory.blobs.get(where.layer);
      return where === undefined || layer === undefined ? [] : [{ unit, where, layer, recorded }];
    }),
  );
  // A compressed layer is decompressed once, for every path recorded of it.
  const compressed = new Map<Digest, Map<string, Digest>>();
  for (const { where } of records) {
    if (compressed.has(where.layer)) continue;
    const compression = compressionOf(store.blobPath(where.layer));
    if (compression === undefined) continue;
    const paths = records.filter((r) => r.where.layer === where.layer).map((r) => r.where.path);
    compressed.set(
      where.layer,
      await hashCompressedMembers(store.blobPath(where.layer), compression, paths, where.layer),
    );
  }
  for (const { unit, where, layer, recorded } of records) {
    const layerPath = store.blobPath(where.layer);
    let actual: Digest | undefined;
    try {
      if (compressed.has(where.layer)) actual = compressed.get(where.layer)!.get(where.path);
      else {
        const range = findTarMember(layerPath, where.path, layer.size);
        actual = range.size === recorded.size ? hashFile(layerPath, range.offset, range.size).digest : undefined;
      }
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
  return wrong;
}

/** `gzip` or `zstd` by the file's first bytes (a compressed tar layer), else `undefined`. */
function compressionOf(path: string): "gzip" | "zstd" | undefined {
  const head = new Uint8Array(4);
  let fd: number | undefined;
  try {
    fd = openRegular(path);
    readAt(fd, head, 0, 4, 0);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return undefined;
}

/** The digests of `paths` in a compressed tar layer, in one streaming pass; none for a layer that does not read. */
async function hashCompressedMembers(
  path: string,
  compression: "gzip" | "zstd",
  paths: string[],
  what: string,
): Promise<Map<string, Digest>> {
  const hashers = new Map<string, Bun.CryptoHasher>();
  try {
    const stream = decompressedStream(path, compression);
    await extractTarMembers(
      stream,
      new Set(paths),
      (name) => {
        const hasher = new Bun.CryptoHasher("sha256");
        hashers.set(name, hasher);
        return { write: (chunk) => void hasher.update(chunk) };
      },
      what,
    );
  } catch {
    return new Map();
  }
  return new Map([...hashers].map(([name, hasher]) => [name, `sha256:${hasher.digest("hex")}` as Digest]));
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
