/**
 * What the commands' `--json` and the admin API print about the cache, in
 * the one vocabulary of `lib/vocabulary.ts` (docs/cli.md, "JSON output"):
 * byte counts are integers named `bytes` or `…Bytes`, other counts `count` or
 * `…Count`, points in time ISO 8601 strings named `…At`, durations seconds
 * named `…Seconds`, a reference name is `reference` and a list of them
 * `references`, platforms objects, digests whole.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";
import type { PlatformWant } from "../oci/platform.ts";
import type { CleanupReport } from "./cleanup.ts";
import type { Inventory } from "./inventory.ts";
import type { RemovalResult, RemovedUnit } from "./remove.ts";
import type { VerifyReport } from "./verify.ts";

/** One cached reference, as `ls --json` and `GET /v1/refs` show it. */
export interface ReferenceRow {
  reference: string;
  digest: Digest;
  mediaType: string;
  /** The platforms whose manifest is cached, for a reference to an index. */
  platforms: PlatformWant[];
  bytes: number;
  /** Of `bytes`, the files taken out of its layers: derived, made again from the layers when needed. */
  derivedBytes: number;
  lastUsedAt: string;
  blobCount: number;
}

/** One blob, as `ls --blobs --json` and `GET /v1/blobs` show it. */
export interface BlobRow {
  digest: Digest;
  bytes: number;
  lastUsedAt: string;
  references: string[];
}

/** The totals of `stats --json` and `GET /v1/stats`. */
export interface CacheStats {
  cacheDir: string;
  referenceCount: number;
  blobCount: number;
  bytes: number;
  /** Of `bytes`, files taken out of layers: cleanup takes them first, and they are made again when needed. */
  derivedBytes: number;
  oldestUseAt: string | null;
  newestUseAt: string | null;
  maxSizeBytes: number;
  overMaxSizeBytes: number;
  maxAgeSeconds: number;
  overMaxAgeBytes: number;
}

/** A removed unit, as `rm`, `prune` and `gc` print it: a reference (named), or a blob no reference reached. */
export interface RemovedRow {
  kind: RemovedUnit["kind"];
  reference?: string;
  digest: Digest;
  bytes: number;
  reason: RemovedUnit["reason"];
  lastUsedAt: string;
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
      bytes: u.size,
      derivedBytes: [...u.derived].reduce((sum, d) => sum + (inventory.blobs.get(d)?.size ?? 0), 0),
      lastUsedAt: iso(u.lastUseMs),
      blobCount: u.blobs.size,
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
    .map((b) => ({
      digest: b.digest,
      bytes: b.size,
      lastUsedAt: iso(b.lastUseMs),
      references: users.get(b.digest) ?? [],
    }));
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
    referenceCount: inventory.units.filter((u) => u.kind === "reference").length,
    blobCount: inventory.blobs.size,
    bytes: inventory.totalBytes,
    derivedBytes: inventory.derivedBytes,
    oldestUseAt: inventory.blobs.size > 0 ? iso(oldest) : null,
    newestUseAt: inventory.blobs.size > 0 ? iso(newest) : null,
    maxSizeBytes: limits.maxSizeBytes,
    overMaxSizeBytes: Math.max(0, inventory.totalBytes - limits.maxSizeBytes),
    maxAgeSeconds: seconds(limits.maxAgeMs),
    overMaxAgeBytes: stale.reduce((sum, u) => sum + u.size, 0),
  };
}

/** What `rm`, `prune` and `DELETE /v1/…` print. */
export function removalJson(result: RemovalResult) {
  return {
    removed: result.removed.map(removedRow),
    freedBytes: result.freedBytes,
    keptInUseCount: result.keptInUse,
  };
}

/** What `gc` and `POST /v1/gc` print. */
export function cleanupJson(report: CleanupReport) {
  const { removed, durationMs, steps, ...rest } = report;
  return {
    ...rest,
    removed: removed.map(removedRow),
    steps: steps.map(({ name, ...step }) => ({ step: name, ...step })),
    durationSeconds: seconds(durationMs),
  };
}

/** What `verify` prints. */
export function verifyJson(report: VerifyReport) {
  const { corrupt, durationMs, checked, ...rest } = report;
  return {
    ...rest,
    checkedCount: checked,
    corrupt: corrupt.map(({ size, ...c }) => ({ ...c, bytes: size })),
    durationSeconds: seconds(durationMs),
  };
}

function removedRow(unit: RemovedUnit): RemovedRow {
  const { lastUseMs, name, ...rest } = unit;
  return { ...rest, ...(unit.kind === "reference" && { reference: name }), lastUsedAt: iso(lastUseMs) };
}

/** A time as ISO 8601. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Milliseconds as seconds, to the millisecond. */
export function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}
