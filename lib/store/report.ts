/**
 * The views of an inventory that `ls`, `stats` and the admin API share:
 * plain JSON-ready rows.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";
import type { Inventory } from "./inventory.ts";

/** One cached reference, as `ls --json` and `GET /v1/refs` show it. */
export interface ReferenceRow {
  reference: string;
  digest: Digest;
  mediaType: string;
  platforms: string[];
  size: number;
  lastUse: string;
  blobs: number;
}

/** One blob, as `ls --blobs --json` and `GET /v1/blobs` show it. */
export interface BlobRow {
  digest: Digest;
  size: number;
  lastUse: string;
  references: string[];
}

/** The totals of `stats --json` and `GET /v1/stats`. */
export interface CacheStats {
  cacheDir: string;
  references: number;
  blobs: number;
  bytes: number;
  oldestUse: string | null;
  newestUse: string | null;
  maxSize: number;
  overMaxSize: number;
  maxAgeMs: number;
  overMaxAge: number;
}

/**
 * Every cached reference.
 *
 * @example
 * ```ts
 * import { takeInventory } from "./inventory.ts";
 * import { referenceRows } from "./report.ts";
 * import { Store } from "./store.ts";
 * console.log(referenceRows(takeInventory(new Store("/tmp/ocicache-example"))));
 * ```
 */
export function referenceRows(inventory: Inventory): ReferenceRow[] {
  return inventory.units
    .filter((u) => u.kind === "reference")
    .map((u) => ({
      reference: u.name,
      digest: u.digest,
      mediaType: u.entry?.mediaType ?? "",
      platforms: u.platforms,
      size: u.size,
      lastUse: iso(u.lastUseMs),
      blobs: u.blobs.size,
    }));
}

/** Every blob, the most recently used first, with the references that reach it. */
export function blobRows(inventory: Inventory): BlobRow[] {
  const users = new Map<Digest, string[]>();
  for (const unit of inventory.units) {
    if (unit.kind !== "reference") continue;
    for (const digest of unit.blobs) users.set(digest, [...(users.get(digest) ?? []), unit.name]);
  }
  return [...inventory.blobs.values()]
    .sort((a, b) => b.lastUseMs - a.lastUseMs)
    .map((b) => ({ digest: b.digest, size: b.size, lastUse: iso(b.lastUseMs), references: users.get(b.digest) ?? [] }));
}

/** Totals, the oldest and newest use, and the bytes over the limits. */
export function cacheStats(
  inventory: Inventory,
  limits: { cacheDir: string; maxSizeBytes: number; maxAgeMs: number },
  now = Date.now(),
): CacheStats {
  let oldest = Infinity;
  let newest = -Infinity;
  for (const blob of inventory.blobs.values()) {
    oldest = Math.min(oldest, blob.lastUseMs);
    newest = Math.max(newest, blob.lastUseMs);
  }
  const stale = inventory.units.filter((u) => u.lastUseMs < now - limits.maxAgeMs);
  return {
    cacheDir: limits.cacheDir,
    references: inventory.units.filter((u) => u.kind === "reference").length,
    blobs: inventory.blobs.size,
    bytes: inventory.totalBytes,
    oldestUse: inventory.blobs.size > 0 ? iso(oldest) : null,
    newestUse: inventory.blobs.size > 0 ? iso(newest) : null,
    maxSize: limits.maxSizeBytes,
    overMaxSize: Math.max(0, inventory.totalBytes - limits.maxSizeBytes),
    maxAgeMs: limits.maxAgeMs,
    overMaxAge: stale.reduce((sum, u) => sum + u.size, 0),
  };
}

/** A time as ISO 8601. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
