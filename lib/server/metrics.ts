/**
 * What `ocicache serve` counts, and its Prometheus text exposition (format
 * 0.0.4). Every name starts with `ocicache_`; counters end in `_total`, sizes
 * in `_bytes`, durations in `_seconds` (docs/serving.md lists each metric).
 *
 * @module
 */

import { AuthError, IntegrityError, NotFoundError, RegistryError } from "../errors.ts";
import type { CacheEvent } from "../pull/cache.ts";

/** The route classes request durations are kept for. */
export type RouteClass =
  | "health"
  | "metrics"
  | "api_read"
  | "api_write"
  | "v2_manifest"
  | "v2_blob"
  | "v2_tags"
  | "v2_catalog"
  | "v2_other"
  | "other";

/** One request answered. */
export interface RecentRequest {
  method: string;
  path: string;
  status: number;
  ms: number;
}

/** Requests the status page lists. */
const RECENT_REQUESTS = 20;

/** The upper bounds of the request-duration buckets, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Counters and gauges since the server started. */
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
  /** Mirror: manifests refused by the signature policy (`serve --policy`). */
  policyRefusals = 0;
  /** Tags answered from their last known digest because the upstream could not be asked. */
  staleTags = 0;
  /** The last of those, for the status page. */
  lastStaleTag: { name: string; at: number } | undefined;
  /** The last requests answered (the status page's own and `/metrics` left out), the newest first. */
  readonly recent: RecentRequest[] = [];
  /** The last error on the upstream side, for the status page. */
  lastUpstreamError: { kind: string; at: number } | undefined;
  readonly #durations = new Map<RouteClass, { buckets: number[]; sum: number; count: number }>();
  readonly #upstreamErrors = new Map<string, number>();

  /** Count one cache event. */
  record(event: CacheEvent): void {
    if (event.type === "hit") this.hits++;
    if (event.type === "fetched") {
      this.misses++;
      this.bytesFetched += event.bytes;
    }
    if (event.type === "verification-failure") this.verificationFailures++;
    if (event.type === "stale-tag") {
      this.staleTags++;
      this.lastStaleTag = { name: event.name, at: Date.now() };
    }
  }

  /** Remember a request for the status page's list of recent ones. */
  request(entry: RecentRequest): void {
    if (entry.path === "/" || entry.path === "/metrics") return;
    this.recent.unshift(entry);
    this.recent.length = Math.min(this.recent.length, RECENT_REQUESTS);
  }

  /** Count how long a request of a route class took until its answer (headers) was ready. */
  observe(route: RouteClass, seconds: number): void {
    const histogram = this.#durations.get(route) ?? { buckets: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 };
    DURATION_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) histogram.buckets[i]!++;
    });
    histogram.sum += seconds;
    histogram.count++;
    this.#durations.set(route, histogram);
  }

  /** Count an error that came from the upstream side of a request, by its kind. */
  upstreamError(error: unknown): void {
    const kind = upstreamErrorKind(error);
    if (kind === undefined) return;
    this.#upstreamErrors.set(kind, (this.#upstreamErrors.get(kind) ?? 0) + 1);
    this.lastUpstreamError = { kind, at: Date.now() };
  }

  /**
   * The metrics and the cache's current size, as Prometheus text.
   *
   * @example
   * ```ts
   * import { Metrics } from "./metrics.ts";
   * console.log(new Metrics().render({ bytes: 0, references: 0, blobs: 0 }));
   * ```
   */
  render(gauges: { bytes: number; references: number; blobs: number }): string {
    const lines: string[] = [];
    const head = (name: string, type: "counter" | "gauge" | "histogram", help: string) =>
      lines.push(`# HELP ocicache_${name} ${help}`, `# TYPE ocicache_${name} ${type}`);
    const metric = (name: string, type: "counter" | "gauge", help: string, value: number) => {
      head(name, type, help);
      lines.push(`ocicache_${name} ${value}`);
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
      "Downloads refused: wrong size or digest.",
      this.verificationFailures,
    );
    metric("evictions_total", "counter", "Units removed by cleanup.", this.evictions);
    metric(
      "damaged_blobs_dropped_total",
      "counter",
      "Cached blobs found damaged and dropped.",
      this.damagedBlobsDropped,
    );
    metric("mirror_refused_total", "counter", "Blob requests refused (429) past maxConnections.", this.refusedTotal);
    metric("mirror_policy_refused_total", "counter", "Manifests the signature policy refused.", this.policyRefusals);
    metric(
      "stale_tags_total",
      "counter",
      "Tags answered from their last known digest: the upstream could not be asked.",
      this.staleTags,
    );
    head("upstream_errors_total", "counter", "Requests that failed on the upstream side, by kind.");
    for (const [kind, count] of [...this.#upstreamErrors].sort())
      lines.push(`ocicache_upstream_errors_total{kind="${kind}"} ${count}`);
    head("http_request_duration_seconds", "histogram", "Time until the answer of a request was ready, by route class.");
    for (const [route, histogram] of [...this.#durations].sort()) {
      for (const [i, bound] of DURATION_BUCKETS.entries())
        lines.push(
          `ocicache_http_request_duration_seconds_bucket{route="${route}",le="${bound}"} ${histogram.buckets[i]}`,
        );
      lines.push(`ocicache_http_request_duration_seconds_bucket{route="${route}",le="+Inf"} ${histogram.count}`);
      lines.push(`ocicache_http_request_duration_seconds_sum{route="${route}"} ${histogram.sum}`);
      lines.push(`ocicache_http_request_duration_seconds_count{route="${route}"} ${histogram.count}`);
    }
    metric("mirror_downloads_in_flight", "gauge", "Upstream blob downloads running now.", this.downloadsInFlight);
    metric("mirror_downloads_queued", "gauge", "Missing blobs waiting for a download slot.", this.downloadsQueued);
    metric("mirror_blob_streams", "gauge", "Blob responses following a download, in progress.", this.blobStreams);
    metric("mirror_buffered_bytes", "gauge", "Bytes of blob bodies held in memory for clients.", this.bufferedBytes);
    metric("cache_bytes", "gauge", "Bytes in blobs/.", gauges.bytes);
    metric("references", "gauge", "Cached references.", gauges.references);
    metric("blobs", "gauge", "Blobs in the cache.", gauges.blobs);
    return `${lines.join("\n")}\n`;
  }
}

/**
 * The route class of a request, for the duration histogram.
 *
 * @example Classes of a few requests
 * ```ts
 * import assert from "node:assert";
 * import { routeClass } from "./metrics.ts";
 * assert.equal(routeClass("GET", "/v2/unikraft/nginx/blobs/sha256:ab"), "v2_blob");
 * assert.equal(routeClass("POST", "/v1/gc"), "api_write");
 * ```
 */
export function routeClass(method: string, path: string): RouteClass {
  if (path === "/healthz" || path === "/readyz") return "health";
  if (path === "/metrics") return "metrics";
  if (path.startsWith("/v1/")) return method === "GET" || method === "HEAD" ? "api_read" : "api_write";
  if (path === "/v2/_catalog") return "v2_catalog";
  if (/^\/v2\/.+\/tags\/list$/.test(path)) return "v2_tags";
  if (/^\/v2\/.+\/manifests\/[^/]+$/.test(path)) return "v2_manifest";
  if (/^\/v2\/.+\/blobs\/[^/]+$/.test(path)) return "v2_blob";
  return path.startsWith("/v2/") ? "v2_other" : "other";
}

/** The kind of an upstream failure: the registry error's kind, or auth, integrity, not_found. */
function upstreamErrorKind(error: unknown): string | undefined {
  if (error instanceof RegistryError) return error.kind;
  if (error instanceof AuthError) return "auth";
  if (error instanceof IntegrityError) return "integrity";
  if (error instanceof NotFoundError) return "not_found";
  return undefined;
}
