/**
 * What the cache holds, as units that are kept or removed whole: each cached
 * reference with every blob it reaches (its manifests, their config and
 * layers, the files taken out of its tar layers), and each blob no reference
 * reaches. A unit's last use is the newest last use among its blobs. A file
 * taken out of a layer is derived data: made again from the layer when it is
 * needed, its blob may be absent (that is not missing), and cleanup takes it
 * before any layer, config or manifest.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../oci/limits.ts";
import { type Manifest, parseManifest } from "../oci/manifest.ts";
import { REF_NAME_ANNOTATION } from "../oci/names.ts";
import { describe, type PlatformWant } from "../oci/platform.ts";
import { type IndexEntry, parseDerived, parseSignatures, readIndex } from "./index-file.ts";
import type { Store } from "./store.ts";

/** One blob on disk. */
export interface BlobInfo {
  digest: Digest;
  size: number;
  /** The newer of its write and its last recorded use. */
  lastUseMs: number;
}

/** A unit: a cached reference and what it reaches, one unreferenced blob, or (for cleanup) one derived file. */
export interface Unit {
  kind: "reference" | "blob" | "derived";
  /** The reference name, or the blob's digest. */
  name: string;
  /** What the reference resolved to, or the blob. */
  digest: Digest;
  /** The blobs of the unit that are on disk. */
  blobs: Set<Digest>;
  /** Blobs the unit needs that are not on disk (its top manifest). */
  missing: Digest[];
  /** Its blobs that are files taken out of its layers (derived: they can be made again), not also layers. */
  derived: Set<Digest>;
  /** Platforms whose manifest is cached, for a reference to an index. */
  platforms: PlatformWant[];
  lastUseMs: number;
  /** Bytes of the unit's blobs on disk, shared ones included. */
  size: number;
  entry?: IndexEntry;
}

/** Everything in the cache. */
export interface Inventory {
  blobs: Map<Digest, BlobInfo>;
  units: Unit[];
  totalBytes: number;
  /** Blobs that are derived files of some reference and nothing else: the bytes cleanup takes first. */
  derived: Set<Digest>;
  derivedBytes: number;
}

/**
 * Read `index.json` and `blobs/` into units.
 *
 * @example
 * ```ts
 * import { takeInventory } from "./inventory.ts";
 * import { Store } from "./store.ts";
 * const inventory = takeInventory(new Store("/tmp/ocicache-example"));
 * console.log(inventory.units.length, inventory.totalBytes);
 * ```
 */
export function takeInventory(store: Store): Inventory {
  const blobs = listBlobs(store);
  const units: Unit[] = [];
  const referenced = new Set<Digest>();
  /** Blobs some unit needs as more than a derived file (a manifest, a config, a layer). */
  const needed = new Set<Digest>();
  for (const entry of readIndex(store.root)) {
    const unit = referenceUnit(store, blobs, entry);
    for (const digest of unit.blobs) {
      referenced.add(digest);
      if (!unit.derived.has(digest)) needed.add(digest);
    }
    units.push(unit);
  }
  const derived = new Set<Digest>();
  for (const unit of units) for (const digest of unit.derived) if (!needed.has(digest)) derived.add(digest);
  let derivedBytes = 0;
  for (const digest of derived) derivedBytes += blobs.get(digest)!.size;
  for (const blob of blobs.values()) {
    if (referenced.has(blob.digest)) continue;
    units.push({
      kind: "blob",
      name: blob.digest,
      digest: blob.digest,
      blobs: new Set([blob.digest]),
      missing: [],
      derived: new Set(),
      platforms: [],
      lastUseMs: blob.lastUseMs,
      size: blob.size,
    });
  }
  let totalBytes = 0;
  for (const blob of blobs.values()) totalBytes += blob.size;
  return { blobs, units, totalBytes, derived, derivedBytes };
}

/** Every blob that is a regular file, with its size and last use. */
export function listBlobs(store: Store): Map<Digest, BlobInfo> {
  const blobs = new Map<Digest, BlobInfo>();
  for (const entry of store.list())
    if (entry.regular) blobs.set(entry.digest, { digest: entry.digest, size: entry.size, lastUseMs: entry.lastUseMs });
  return blobs;
}

function referenceUnit(store: Store, blobs: Map<Digest, BlobInfo>, entry: IndexEntry): Unit {
  const reached = new Set<Digest>();
  const missing: Digest[] = [];
  const platforms: PlatformWant[] = [];
  /** Visit a blob and what it reaches; whether an image manifest's layers are cached (some of them: a pull takes
   * only the files asked for). */
  const visit = (digest: Digest, depth: number): boolean => {
    if (!blobs.has(digest)) {
      if (depth === 0) missing.push(digest);
      return false;
    }
    reached.add(digest);
    if (depth > 1) return true;
    const bytes = store.readBytes(digest, MAX_MANIFEST_BYTES);
    if (bytes === undefined || (depth === 0 && !isManifestType(entry.mediaType))) return false;
    let manifest: Manifest;
    try {
      manifest = parseManifest(bytes, depth === 0 ? entry.mediaType : "", digest);
    } catch {
      return false;
    }
    if (manifest.kind === "index") {
      // A platform is listed when it was pulled, not when only its manifest was read (inspect reads them all).
      for (const child of manifest.manifests) if (visit(child.digest, depth + 1)) platforms.push(describe(child));
      return false;
    }
    visit(manifest.config.digest, 2);
    return manifest.layers.map((layer) => visit(layer.digest, 2)).some(Boolean);
  };
  visit(entry.digest, 0);
  // The signatures that met a policy are kept with their image: their manifests, and through them the payloads.
  for (const digest of parseSignatures(entry)) visit(digest, 1);
  const derived = new Set<Digest>();
  for (const file of Object.values(parseDerived(entry))) {
    if (!blobs.has(file.digest) || reached.has(file.digest)) continue;
    reached.add(file.digest);
    derived.add(file.digest);
  }
  let lastUseMs = 0;
  let size = 0;
  for (const digest of reached) {
    const blob = blobs.get(digest)!;
    lastUseMs = Math.max(lastUseMs, blob.lastUseMs);
    size += blob.size;
  }
  return {
    kind: "reference",
    name: entry.annotations[REF_NAME_ANNOTATION] ?? entry.digest,
    digest: entry.digest,
    blobs: reached,
    missing,
    derived,
    platforms,
    lastUseMs,
    size,
    entry,
  };
}

function isManifestType(mediaType: string): boolean {
  return mediaType.includes("manifest") || mediaType.includes("index");
}
