/**
 * The automatic cleanup of a long-running `serve`: a CLI pull cleans after it fetched (when the last cleanup is
 * older than `autoCleanInterval`), but a server fetches for any client at any time, so it cleans on that interval,
 * and also as soon as what it fetched since its last cleanup may have taken the cache past `maxSize` (the disk is
 * then bounded by `maxSize`, what was used within `grace`, and the downloads in flight). One cleanup at a time.
 *
 * @module
 */

import type { Cache, CacheEvent } from "../pull/cache.ts";
import { autoClean, type CleanupPolicy, type CleanupReport, cleanUnlessCleaning } from "../store/cleanup.ts";
import { takeInventory } from "../store/inventory.ts";

/** The least time between two cleanups started because the cache may be over `maxSize`. */
const SIZE_CLEAN_SPACING_MS = 5_000;

/** What `Upkeep` runs with. */
export interface UpkeepOptions {
  policy: CleanupPolicy;
  /** How often the cleanup runs; `0` turns the automatic cleanup off, as for the CLI. */
  intervalMs: number;
  /** Told of each cleanup that removed something, and of each that failed. */
  onCleanup?: (outcome: { report: CleanupReport } | { error: Error }) => void;
}

/**
 * Keeps a serving cache within its bounds.
 *
 * @example A server's upkeep, turned off
 * ```ts
 * import assert from "node:assert";
 * import { Cache } from "../pull/cache.ts";
 * import { Upkeep } from "./upkeep.ts";
 * const cache = new Cache({ dir: "/tmp/ocicache-upkeep-example", offline: true });
 * const upkeep = new Upkeep(cache, { policy: { maxAgeMs: 1, maxSizeBytes: 1, graceMs: 0 }, intervalMs: 0 });
 * upkeep.start();
 * assert.equal(upkeep.running, false);
 * upkeep.stop();
 * ```
 */
export class Upkeep {
  readonly #cache: Cache;
  readonly #options: UpkeepOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Bytes in `blobs/` as last known: after the last cleanup, plus what was fetched since. */
  #bytes = 0;
  #cleaning: Promise<void> | undefined;
  #sizeCleanedAt = 0;
  #soon: ReturnType<typeof setTimeout> | undefined;

  constructor(cache: Cache, options: UpkeepOptions) {
    this.#cache = cache;
    this.#options = options;
  }

  /** Whether a cleanup is running now. */
  get running(): boolean {
    return this.#cleaning !== undefined;
  }

  /** Learn what the cache holds, clean when due, and again on every interval. */
  start(): void {
    if (this.#options.intervalMs <= 0 || !this.#cache.writable) return;
    this.#bytes = takeInventory(this.#cache.store).totalBytes;
    this.#run(() => autoClean(this.#cache.store, this.#options.policy, this.#options.intervalMs));
    this.#timer = setInterval(
      () => this.#run(() => cleanUnlessCleaning(this.#cache.store, this.#options.policy)),
      this.#options.intervalMs,
    );
    this.#timer.unref();
  }

  /** Count what the cache took in: a blob fetched that may take it past `maxSize` starts a cleanup. */
  record(event: CacheEvent): void {
    if (event.type !== "fetched" || this.#timer === undefined) return;
    this.#bytes += event.bytes;
    if (this.#bytes > this.#options.policy.maxSizeBytes) this.#cleanSoon();
  }

  /** No more cleanups; one running finishes. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    if (this.#soon !== undefined) clearTimeout(this.#soon);
    this.#timer = undefined;
    this.#soon = undefined;
  }

  /** Wait for the cleanup running now, if any. */
  async settled(): Promise<void> {
    await this.#cleaning;
  }

  /**
   * A cleanup for `maxSize`, spaced out: while what was used within grace keeps the cache over it, every fetch
   * would start one. One asked for too soon after the last runs once the spacing has passed.
   */
  #cleanSoon(): void {
    if (this.#soon !== undefined) return;
    const wait = Math.max(0, this.#sizeCleanedAt + SIZE_CLEAN_SPACING_MS - Date.now());
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#sizeCleanedAt = Date.now();
      this.#run(() => cleanUnlessCleaning(this.#cache.store, this.#options.policy));
    }, wait);
    this.#soon.unref();
  }

  #run(clean: () => Promise<CleanupReport | undefined>): void {
    if (this.#cleaning !== undefined) return;
    this.#cleaning = clean()
      .then((report) => {
        if (report === undefined) return;
        this.#bytes = report.remainingBytes;
        if (report.removed.length > 0) this.#options.onCleanup?.({ report });
      })
      .catch((error: Error) => this.#options.onCleanup?.({ error }))
      .finally(() => {
        this.#cleaning = undefined;
      });
  }
}
