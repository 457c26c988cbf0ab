/**
 * What the mirror's parts share: its dependencies and its bounds.
 *
 * @module
 */

import type { Cache } from "../pull/cache.ts";
import type { Metrics } from "./metrics.ts";
import type { PolicyGate } from "./policy-gate.ts";

/** What the mirror needs. */
export interface MirrorDeps {
  cache: Cache;
  metrics: Metrics;
  /**
   * The registry pulled through, e.g. `127.0.0.1:5000`, whatever its shape (a bare name is a host, never Docker Hub's
   * namespace).
   */
  upstream: string;
  /** How much the mirror takes on at once. */
  limits: MirrorLimits;
  /** With a signature policy (`serve --policy`): what checks each manifest before it is served. */
  gate?: PolicyGate;
}

/** The mirror's bounds: memory is at most `maxConnections` × 2 × `chunkBytes` for blob bodies. */
export interface MirrorLimits {
  /** Upstream blob downloads at once; further misses wait their turn. */
  maxConcurrentDownloads: number;
  /** Blob responses in progress at once; past it a client is told to come back (429, `Retry-After`). */
  maxConnections: number;
  /** Bytes read at once for one client: a blob response holds at most two such chunks. */
  chunkBytes: number;
}
