/**
 * mtime-based cleanup as named steps, each with its own figures: remove stale
 * temp files, expire units unused for longer than `maxAge`, evict the least
 * recently used while the cache is over `maxSize`, then rewrite the index and
 * delete. Never a unit used within `grace`, a download in progress, or a lock
 * that a live process holds.
 *
 * @module
 */

import { lstatSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { type Digest, isDigest } from "../oci/digest.ts";
import { lexists, listNames, removeEntriesUnless } from "./files.ts";
import { type BlobInfo, type Inventory, takeInventory, type Unit } from "./inventory.ts";
import { acquireLock, isAlive, isStale, type Lock } from "./lock.ts";
import { removeStaleRecords } from "./outputs.ts";
import { classifyTemp } from "./paths.ts";
import { removeStaleMemos } from "./refs.ts";
import { lockCleanup, type RemovedUnit, removeUnits } from "./remove.ts";
import type { Store } from "./store.ts";
import { stampFile } from "./writer.ts";

/** What may be removed. */
export interface CleanupPolicy {
  /** Remove units unused for longer than this. @default 30 days */
  maxAgeMs: number;
  /** Then evict the least recently used while over this many bytes. @default 10 GiB */
  maxSizeBytes: number;
  /** Never remove what was used this recently. @default 10 minutes */
  graceMs: number;
  /** Report what would go, remove nothing. @default false */
  dryRun?: boolean;
  /** Stop choosing more units after this time (epoch ms): a bound for automatic cleanup. */
  deadline?: number;
  /** The current time, for tests. @default Date.now() */
  now?: number;
}

/** What a cleanup did, step by step. */
export interface CleanupReport {
  dryRun: boolean;
  removed: RemovedUnit[];
  freedBytes: number;
  /** Bytes in `blobs/` after the cleanup (before it, in a dry run, less what would go). */
  remainingBytes: number;
  steps: Array<{ name: string; count: number; bytes: number }>;
  /** Bytes kept over `maxSizeBytes` because they were used within the grace period. */
  keptRecentBytes: number;
  /** Whether the deadline cut it short. */
  incomplete: boolean;
  durationMs: number;
}

/**
 * Run a cleanup under the cleanup lock.
 *
 * @throws {StoreError} when another cleanup holds the lock past 30 s, or the cache cannot be written.
 * @example A dry run over an empty cache frees nothing
 * ```ts
 * import assert from "node:assert";
 * import { collectGarbage } from "./cleanup.ts";
 * import { Store } from "./store.ts";
 * const store = new Store("/tmp/ocicache-example");
 * store.init();
 * const policy = { maxAgeMs: 7 * 86_400_000, maxSizeBytes: 2 ** 30, graceMs: 600_000, dryRun: true };
 * const report = await collectGarbage(store, policy);
 * assert.equal(report.freedBytes, 0);
 * ```
 */
export async function collectGarbage(store: Store, policy: CleanupPolicy): Promise<CleanupReport> {
  const lock = await lockCleanup(store);
  try {
    return await cleanLocked(store, policy);
  } finally {
    lock.release();
  }
}

/**
 * The automatic cleanup after a pull that fetched something: runs when the
 * last one (its stamp, `tmp/gc.stamp`) is older than `intervalMs`, never
 * while another process cleans, and stops choosing after `budgetMs`.
 *
 * @returns the report, or `undefined` when it was not due or another process was cleaning.
 */
export async function autoClean(
  store: Store,
  policy: CleanupPolicy,
  intervalMs: number,
  budgetMs = 2000,
): Promise<CleanupReport | undefined> {
  if (intervalMs <= 0 || !store.trusted) return undefined;
  const now = policy.now ?? Date.now();
  try {
    if (now - lstatSync(store.paths.cleanupStamp).mtimeMs < intervalMs) return undefined;
  } catch {
    // Never cleaned: due now.
  }
  return cleanUnlessCleaning(store, policy, budgetMs);
}

/**
 * A cleanup now, stamped as an automatic one, unless another process is cleaning; it stops choosing after
 * `budgetMs`. What `serve` runs when what it fetched may have taken the cache past `maxSize`.
 *
 * @returns the report, or `undefined` when another process was cleaning (or the cache is not trusted).
 */
export async function cleanUnlessCleaning(
  store: Store,
  policy: CleanupPolicy,
  budgetMs = 2000,
): Promise<CleanupReport | undefined> {
  if (!store.trusted) return undefined;
  const stamp = store.paths.cleanupStamp;
  const now = policy.now ?? Date.now();
  let lock: Lock;
  try {
    lock = await acquireLock(store.paths.cleanupLock, { timeoutMs: 0 });
  } catch {
    return undefined;
  }
  try {
    stampFile(stamp, now);
    return await cleanLocked(store, { ...policy, deadline: now + budgetMs });
  } finally {
    lock.release();
  }
}

async function cleanLocked(store: Store, policy: CleanupPolicy): Promise<CleanupReport> {
  const started = Date.now();
  const now = policy.now ?? started;
  const dryRun = policy.dryRun === true;
  const stale = removeStaleTemp(store, policy.graceMs, now, dryRun);
  const inventory = takeInventory(store);
  const choice = new Choice(inventory, policy, now);
  const counts = { age: choice.expire(), derived: choice.removeDerived(), size: choice.evict() };
  const result = await removeUnits(store, inventory, choice.chosen, { graceMs: policy.graceMs, dryRun, now });
  if (!dryRun) {
    removeOrphanMarkers(store);
    removeStaleRecords(store);
    removeStaleMemos(store);
  }
  const sum = (reason: RemovedUnit["reason"], derived: boolean) =>
    result.removed
      .filter((r) => r.reason === reason && (r.kind === "derived") === derived)
      .reduce((s, r) => s + r.bytes, 0);
  return {
    dryRun,
    removed: result.removed,
    freedBytes: result.freedBytes,
    remainingBytes: inventory.totalBytes - result.freedBytes,
    steps: [
      { name: "remove stale temp files", count: stale.count, bytes: stale.bytes },
      { name: "expire by age", count: counts.age, bytes: sum("age", false) },
      { name: "remove derived files", count: counts.derived, bytes: sum("size", true) },
      { name: "evict by size", count: counts.size, bytes: sum("size", false) },
      { name: "rewrite the index and delete", count: result.removed.length, bytes: result.freedBytes },
    ],
    keptRecentBytes: [...choice.keptRecent].reduce((sum, d) => sum + (inventory.blobs.get(d)?.size ?? 0), 0),
    incomplete: choice.overdue(),
    durationMs: Date.now() - started,
  };
}

/**
 * What a cleanup removes, chosen in three steps, each returning how many it chose: units unused past `maxAge`;
 * then, while over `maxSize`, files taken out of layers (derived: made again from the layer when needed), oldest
 * use first; then whole units, least recently used first. Nothing used within the grace period is chosen.
 */
class Choice {
  readonly chosen: Array<{ unit: Unit; reason: RemovedUnit["reason"] }> = [];
  /** Blobs kept over `maxSize` because they were used within the grace period. */
  readonly keptRecent = new Set<Digest>();
  readonly #inventory: Inventory;
  readonly #policy: CleanupPolicy;
  readonly #protectedAfter: number;
  readonly #ageCutoff: number;
  /** How many chosen-not units reach each blob, and the bytes that stay. */
  readonly #refs = new Map<Digest, number>();
  #total: number;

  constructor(inventory: Inventory, policy: CleanupPolicy, now: number) {
    this.#inventory = inventory;
    this.#policy = policy;
    this.#protectedAfter = now - policy.graceMs;
    this.#ageCutoff = now - policy.maxAgeMs;
    this.#total = inventory.totalBytes;
    for (const unit of inventory.units)
      for (const digest of unit.blobs) this.#refs.set(digest, (this.#refs.get(digest) ?? 0) + 1);
  }

  overdue(): boolean {
    return this.#policy.deadline !== undefined && Date.now() > this.#policy.deadline;
  }

  expire(): number {
    const before = this.chosen.length;
    for (const unit of this.#inventory.units) {
      if (this.overdue()) break;
      if (unit.lastUseMs < this.#ageCutoff && unit.lastUseMs < this.#protectedAfter) this.#choose(unit, "age");
    }
    return this.chosen.length - before;
  }

  removeDerived(): number {
    const before = this.chosen.length;
    const going = new Set(this.chosen.flatMap((c) => [...c.unit.blobs]));
    const derived = [...this.#inventory.derived]
      .filter((digest) => !going.has(digest))
      .map((digest) => this.#inventory.blobs.get(digest)!)
      .sort((a, b) => a.lastUseMs - b.lastUseMs);
    for (const blob of derived) {
      if (this.#total <= this.#policy.maxSizeBytes || this.overdue()) break;
      if (blob.lastUseMs >= this.#protectedAfter) this.keptRecent.add(blob.digest);
      else {
        this.chosen.push({ unit: derivedUnit(blob), reason: "size" });
        this.#refs.set(blob.digest, 0);
        this.#total -= blob.size;
      }
    }
    return this.chosen.length - before;
  }

  evict(): number {
    const before = this.chosen.length;
    const expired = new Set(this.chosen.map((c) => c.unit));
    const byLastUse = this.#inventory.units.filter((u) => !expired.has(u)).sort((a, b) => a.lastUseMs - b.lastUseMs);
    for (const unit of byLastUse) {
      if (this.#total <= this.#policy.maxSizeBytes || this.overdue()) break;
      if (unit.lastUseMs >= this.#protectedAfter) for (const digest of unit.blobs) this.keptRecent.add(digest);
      else this.#choose(unit, "size");
    }
    return this.chosen.length - before;
  }

  /** Choose `unit`; the bytes of its blobs no other unit reaches no longer count. */
  #choose(unit: Unit, reason: RemovedUnit["reason"]): void {
    this.chosen.push({ unit, reason });
    for (const digest of unit.blobs) {
      const left = (this.#refs.get(digest) ?? 1) - 1;
      this.#refs.set(digest, left);
      if (left === 0) this.#total -= this.#inventory.blobs.get(digest)?.size ?? 0;
    }
  }
}

/** A file taken out of a layer, as a unit of its own: removed alone, its reference kept. */
function derivedUnit(blob: BlobInfo): Unit {
  return {
    kind: "derived",
    name: blob.digest,
    digest: blob.digest,
    blobs: new Set([blob.digest]),
    missing: [],
    derived: new Set([blob.digest]),
    platforms: [],
    lastUseMs: blob.lastUseMs,
    size: blob.size,
  };
}

/** Remove the use markers of blobs that are gone (a link planted in `uses/` is removed itself). */
function removeOrphanMarkers(store: Store): void {
  if (!store.trusted) return;
  removeEntriesUnless(store.paths.usesDir, (name) => {
    const digest = `sha256:${name}`;
    return isDigest(digest) && store.stat(digest) !== undefined;
  });
}

/**
 * Remove temp files whose owner is dead and that are older than the grace
 * period, and locks whose owner is dead. Temp files name their owner's pid
 * (`<name>.<pid>.<random>.part`); a resumable download (`<hex>.partial`) is
 * owned by whoever holds `<hex>.lock`. Entries are looked at with `lstat`:
 * a link is removed itself, never what it points to.
 */
function removeStaleTemp(
  store: Store,
  graceMs: number,
  now: number,
  dryRun: boolean,
): { count: number; bytes: number } {
  if (!store.trusted) return { count: 0, bytes: 0 };
  let count = 0;
  let bytes = 0;
  for (const name of listNames(store.tmpDir)) {
    const entry = classifyTemp(name);
    if (entry.kind === "cleanup") continue;
    const path = join(store.tmpDir, name);
    let stale: boolean;
    let size = 0;
    try {
      const stat = lstatSync(path);
      size = stat.isFile() ? stat.size : 0;
      const old = now - stat.mtimeMs > graceMs;
      if (entry.kind === "lock") stale = isStale(path);
      else if (entry.kind === "partial")
        stale = old && (!lexists(join(store.tmpDir, entry.lock)) || isStale(join(store.tmpDir, entry.lock)));
      else if (entry.kind === "temp") stale = old && !isAlive(entry.pid);
      else stale = old;
    } catch {
      continue;
    }
    if (!stale) continue;
    count++;
    bytes += size;
    if (dryRun) continue;
    try {
      unlinkSync(path);
    } catch {
      // Taken over or removed by its owner meanwhile.
    }
  }
  return { count, bytes };
}
