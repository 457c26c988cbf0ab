/**
 * The admin API under `/v1`: the cache as JSON (`stats`, `refs`, `blobs`), and what changes it (`pull`, `gc`,
 * removals), which needs the admin token and no web page of another origin. Each handler reads validated input and
 * calls the layer below.
 *
 * @module
 */

import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { z } from "zod";
import type { Config } from "../config/config.ts";
import { UsageError } from "../errors.ts";
import { type Digest, isDigest } from "../oci/digest.ts";
import { parsePlatform } from "../oci/platform.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import type { Cache } from "../pull/cache.ts";
import { pullImage, pullJson } from "../pull/pull.ts";
import { collectGarbage } from "../store/cleanup.ts";
import { takeInventory } from "../store/inventory.ts";
import { removeTargets } from "../store/remove.ts";
import { blobRows, cacheStats, cleanupJson, referenceRows, removalJson } from "../store/report.ts";
import { parseDuration, parseSize } from "../units.ts";
import { checkedQuery, jsonBody } from "./json-body.ts";
import type { Metrics } from "./metrics.ts";
import { sameOrigin } from "./middleware/origin.ts";

/** What the admin API works with. */
export interface AdminRoutesDeps {
  config: Config;
  cache: Cache;
  metrics: Metrics;
  /** The bearer token that changing routes require. */
  token: string;
  /** Host names answered besides IP addresses and `localhost`. */
  allowed: ReadonlySet<string>;
}

const PULL_BODY = z.strictObject({
  ref: z.string().min(1).max(512),
  platform: z.string().min(1).max(64).optional(),
  plat: z.string().min(1).max(64).optional(),
});
const GC_BODY = z.strictObject({
  maxAge: z.string().min(1).max(32).optional(),
  maxSize: z.string().min(1).max(32).optional(),
  dryRun: z.boolean().optional(),
});
const BLOBS_QUERY = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  cursor: z.string().refine(isDigest, "expected a blob digest").optional(),
});

/**
 * The `/v1` sub-app (`app.route("/v1", adminRoutes(deps))`).
 *
 * @example
 * ```ts
 * import { adminRoutes } from "./admin.ts";
 * // app.route("/v1", adminRoutes({ config, cache, metrics, token, allowed: new Set() }));
 * ```
 */
export function adminRoutes(deps: AdminRoutesDeps): Hono {
  const { config, cache, metrics } = deps;
  const admin = new Hono();
  const refused = (message: string) => ({ message: { code: "EAUTH", message } });
  // The token compared in constant time over SHA-256 digests (Web Crypto), a 401 with WWW-Authenticate otherwise.
  const requireToken = bearerAuth({
    token: deps.token,
    realm: "ocicache",
    noAuthenticationHeader: refused("This route needs Authorization: Bearer <token>"),
    invalidAuthenticationHeader: refused("This route needs Authorization: Bearer <token>"),
    invalidToken: refused("The token is not the admin token"),
  });
  admin.on(["POST", "PUT", "PATCH", "DELETE"], "*", sameOrigin(deps.allowed), requireToken);

  admin.get("/stats", (c) => c.json(cacheStats(takeInventory(cache.store), config)));
  admin.get("/refs", (c) => c.json(referenceRows(takeInventory(cache.store))));
  admin.get("/blobs", checkedQuery(BLOBS_QUERY), (c) => {
    const query = c.req.valid("query");
    const all = blobRows(takeInventory(cache.store)).sort((a, b) => (a.digest < b.digest ? -1 : 1));
    const start = query.cursor === undefined ? 0 : all.findIndex((b) => b.digest > query.cursor!);
    const page = start === -1 ? [] : all.slice(start, start + (query.limit ?? 100));
    const next = start !== -1 && start + page.length < all.length ? page.at(-1)?.digest : undefined;
    return c.json({ blobs: page, ...(next !== undefined && { next }) });
  });

  admin.post("/pull", ...jsonBody(PULL_BODY), async (c) => {
    const body = c.req.valid("json");
    const platform = parsePlatform(body.platform, body.plat);
    const result = await pullImage(cache, parseReference(body.ref), { platform, concurrency: config.concurrency });
    return c.json(pullJson(result));
  });
  admin.post("/gc", ...jsonBody(GC_BODY), async (c) => {
    const body = c.req.valid("json");
    const report = await collectGarbage(cache.store, {
      maxAgeMs: body.maxAge === undefined ? config.maxAgeMs : parseDuration(body.maxAge, '"maxAge"'),
      maxSizeBytes: body.maxSize === undefined ? config.maxSizeBytes : parseSize(body.maxSize, '"maxSize"'),
      graceMs: config.graceMs,
      dryRun: body.dryRun === true,
    });
    if (!report.dryRun) metrics.evictions += report.removed.length;
    return c.json(cleanupJson(report));
  });
  admin.delete("/refs/:ref{.+}", async (c) => {
    const name = formatReference(parseReference(c.req.param("ref")));
    return c.json(removalJson(await removeTargets(cache.store, [{ name }])));
  });
  admin.delete("/blobs/:digest", async (c) => {
    const digest = c.req.param("digest");
    if (!isDigest(digest)) throw new UsageError(`Invalid "digest": expected sha256:<64 hex>`);
    return c.json(removalJson(await removeTargets(cache.store, [{ digest: digest as Digest }])));
  });
  return admin;
}
