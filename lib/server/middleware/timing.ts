/**
 * The time each request takes, by route class, and the list of recent requests the status page shows.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { type Metrics, routeClass } from "../metrics.ts";

/**
 * The middleware: counts every request in `metrics` once its answer is ready.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { Metrics } from "../metrics.ts";
 * import { timing } from "./timing.ts";
 * const metrics = new Metrics();
 * const app = new Hono().use("*", timing(metrics)).get("/v1/stats", (c) => c.json({}));
 * await app.request("/v1/stats");
 * assert.equal(metrics.recent[0]!.path, "/v1/stats");
 * ```
 */
export function timing(metrics: Metrics): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    const path = c.req.path;
    try {
      await next();
    } finally {
      const ms = performance.now() - started;
      metrics.observe(routeClass(c.req.method, path), ms / 1000);
      metrics.request({ method: c.req.method, path: path.slice(0, 200), status: c.res.status, ms });
    }
  };
}
