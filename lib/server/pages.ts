/**
 * What `serve` answers outside its APIs: the status page, liveness, readiness and the Prometheus metrics.
 *
 * @module
 */

import { Hono } from "hono";
import type { Config } from "../config/config.ts";
import type { Cache } from "../pull/cache.ts";
import { probeWritable } from "../store/files.ts";
import { takeInventory } from "../store/inventory.ts";
import { cacheStats, referenceRows } from "../store/report.ts";
import type { Metrics } from "./metrics.ts";
import { renderStatus } from "./status.ts";

/** What the pages show. */
export interface PagesDeps {
  config: Config;
  cache: Cache;
  metrics: Metrics;
  upstream?: string;
}

/** The status page loads nothing and runs nothing: its own inline styles only. */
const STATUS_PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The sub-app of `/`, `/healthz`, `/readyz` and `/metrics` (`app.route("/", pages(deps))`).
 *
 * @example
 * ```ts
 * import { pages } from "./pages.ts";
 * // app.route("/", pages({ config, cache, metrics }));
 * ```
 */
export function pages(deps: PagesDeps): Hono {
  const { config, cache, metrics } = deps;
  const app = new Hono();
  app.get("/", (c) => {
    const inventory = takeInventory(cache.store);
    c.header("Content-Security-Policy", STATUS_PAGE_CSP);
    return c.html(
      renderStatus({
        stats: cacheStats(inventory, config),
        references: referenceRows(inventory),
        metrics,
        ...(deps.upstream !== undefined && { upstream: deps.upstream }),
        now: Date.now(),
      }),
    );
  });
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const unwritable = probeWritable(cache.store.tmpDir);
    return unwritable === undefined
      ? c.json({ status: "ready" })
      : c.json({ status: "not ready", reason: unwritable.message }, 503);
  });
  app.get("/metrics", (c) => {
    const inventory = takeInventory(cache.store);
    const body = metrics.render({
      bytes: inventory.totalBytes,
      references: referenceRows(inventory).length,
      blobs: inventory.blobs.size,
    });
    return c.body(body, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  return app;
}
