/**
 * The counters `ocicache serve` keeps, and their Prometheus text exposition
 * (format 0.0.4).
 *
 * @module
 */

import type { CacheEvent } from "../pull/cache.ts";

/** Counters since the server started. */
export class Metrics {
  hits = 0;
  misses = 0;
  bytesServedFromCache = 0;
  bytesFetched = 0;
  verificationFailures = 0;
  evictions = 0;
  damagedBlobsDropped = 0;
  /** Mirror: upstream blob downloads running now. */
  downloadsInFlight = 0;
  /** Mirror: missing blobs waiting for a download slot. */
  downloadsQueued = 0;
  /** Mirror: blob responses in progress. */
  blobStreams = 0;
  /** Mirror: bytes of blob bodies held in memory for clients. */
  bufferedBytes = 0;
  /** Mirror: blob requests refused with 429 past `maxConnections`. */
  refusedTotal = 0;

  /** Count one cache event. */
  record(event: CacheEvent): void {
    if (event.type === "hit") this.hits++;
    if (event.type === "fetched") {
      this.misses++;
      this.bytesFetched += event.bytes;
    }
    if (event.type === "verification-failure") this.verificationFailures++;
  }

  /**
   * The counters and the cache's current size, as Prometheus text.
   *
   * @example
   * ```ts
   * import { Metrics } from "./metrics.ts";
   * console.log(new Metrics().render({ bytes: 0, references: 0, blobs: 0 }));
   * ```
   */
  render(gauges: { bytes: number; references: number; blobs: number }): string {
    const lines: string[] = [];
    const metric = (name: string, type: "counter" | "gauge", help: string, value: number) => {
      lines.push(`# HELP ocicache_${name} ${help}`, `# TYPE ocicache_${name} ${type}`, `ocicache_${name} ${value}`);
    };
    metric("hits_total", "counter", "Blobs served from the cache.", this.hits);
    metric("misses_total", "counter", "Blobs fetched from a registry.", this.misses);
    metric(
      "served_from_cache_bytes_total",
      "counter",
      "Bytes sent to mirror clients from the cache.",
      this.bytesServedFromCache,
    );
    metric("fetched_bytes_total", "counter", "Bytes fetched from registries and verified.", this.bytesFetched);
    metric(
      "verification_failures_total",
      "counter",
      "Downloads refused because their size or digest was wrong.",
      this.verificationFailures,
    );
    metric("evictions_total", "counter", "Units removed by cleanup.", this.evictions);
    metric(
      "damaged_blobs_dropped_total",
      "counter",
      "Cached blobs that failed verification while served to a mirror client, and were dropped.",
      this.damagedBlobsDropped,
    );
    metric("mirror_refused_total", "counter", "Blob requests refused (429) past maxConnections.", this.refusedTotal);
    metric("mirror_downloads_in_flight", "gauge", "Upstream blob downloads running now.", this.downloadsInFlight);
    metric("mirror_downloads_queued", "gauge", "Missing blobs waiting for a download slot.", this.downloadsQueued);
    metric("mirror_blob_streams", "gauge", "Blob responses in progress.", this.blobStreams);
    metric("mirror_buffered_bytes", "gauge", "Bytes of blob bodies held in memory for clients.", this.bufferedBytes);
    metric("cache_bytes", "gauge", "Bytes in blobs/.", gauges.bytes);
    metric("references", "gauge", "Cached references.", gauges.references);
    metric("blobs", "gauge", "Blobs in the cache.", gauges.blobs);
    return `${lines.join("\n")}\n`;
  }
}
