/**
 * The Hono admin app of `ocicache serve`: health, Prometheus metrics, the
 * cache as JSON, pull, cleanup and removal, and (with an upstream) the read
 * side of the OCI distribution API as a mirror. Loaded only by `serve`.
 *
 * @module
 */

import { Hono, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { secureHeaders } from "hono/secure-headers";
import { HTTPException } from "hono/http-exception";
import { validator } from "hono/validator";
import { z } from "zod";
import { timingSafeEqual } from "node:crypto";
import type { Cache } from "../pull/cache.ts";
import { pruneCache } from "../store/cleanup.ts";
import type { Config } from "../config/config.ts";
import { isDigest, type Digest } from "../oci/digest.ts";
import { OcicacheError, UsageError } from "../errors.ts";
import { takeInventory } from "../store/inventory.ts";
import { routeClass, type Metrics } from "./metrics.ts";
import { basicChecker, type Htpasswd } from "./htpasswd.ts";
import { mountMirror } from "./mirror.ts";
import { renderStatus } from "./status.ts";
import { parsePlatform } from "../oci/platform.ts";
import { pullImage, pullJson } from "../pull/pull.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import { removeTargets } from "../store/remove.ts";
import { blobRows, cacheStats, cleanupJson, referenceRows, removalJson } from "../store/report.ts";
import { probeWritable } from "../store/writer.ts";
import { parseDuration, parseSize } from "../units.ts";

/** What the admin app works with. */
export interface AdminDeps {
  config: Config;
  cache: Cache;
  metrics: Metrics;
  /** The bearer token that mutating routes require. */
  token: string;
  /** The registry the `/v2/` mirror pulls through, e.g. `127.0.0.1:5000`; no mirror without it. */
  upstream?: string;
  /** Host names answered besides IP addresses and `localhost` (the listen host, `--allowed-host`). @default [] */
  allowedHosts?: string[];
  /** Mirror clients must give Basic credentials from these users. */
  htpasswd?: Htpasswd;
}

/** HTTP statuses of the error codes (the admin API's JSON errors). */
const STATUS_OF = { EUSAGE: 400, ENOTFOUND: 404, EINTEGRITY: 502, EREGISTRY: 502, EAUTH: 502, ESTORE: 500 } as const;

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
 * Build the admin app; serve it with `Bun.serve({ fetch: app.fetch })`.
 *
 * @example
 * ```ts
 * import { createAdminApp } from "./app.ts";
 * // const app = createAdminApp({ config, cache, metrics: new Metrics(), token });
 * // const response = await app.request("/healthz");
 * ```
 */
export function createAdminApp(deps: AdminDeps): Hono {
  const app = new Hono();
  const { config, cache, metrics } = deps;
  const allowed = new Set((deps.allowedHosts ?? []).map((h) => hostName(h)));

  // DNS rebinding: a web page whose name resolves to this address must not reach the API or the mirror. First, so
  // that a Host no URL can be made of is answered before anything reads the request's URL.
  app.use("*", async (c, next) => {
    // No Host header: a request made in this process (`app.request`), whose URL names the host.
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    if (!isHostHeader(host)) throw new HTTPException(400, { message: "The Host header is not a host name" });
    if (!isAllowedHost(host, allowed)) {
      throw new HTTPException(421, {
        message: `Requests for the host "${host.slice(0, 80)}" are not answered here (allow it with --allowed-host)`,
      });
    }
    await next();
  });
  app.use("*", async (c, next) => {
    const started = performance.now();
    const path = c.req.path;
    try {
      await next();
    } finally {
      const ms = performance.now() - started;
      metrics.observe(routeClass(c.req.method, path), ms / 1000);
      metrics.request({ method: c.req.method, path: path.slice(0, 200), status: c.res.status, ms });
    }
  });
  app.use("*", secureHeaders({ strictTransportSecurity: false, crossOriginResourcePolicy: false }));
  if (deps.htpasswd !== undefined) app.use("*", clientsOnly(deps.htpasswd, deps.token));

  const admin = adminOnly(deps.token, allowed);
  app.on(["POST", "PUT", "PATCH", "DELETE"], "/v1/*", admin.sameOrigin, admin.token);

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
    const reason = cacheWritable(cache);
    return reason === undefined ? c.json({ status: "ready" }) : c.json({ status: "not ready", reason }, 503);
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
  app.get("/v1/stats", (c) => c.json(cacheStats(takeInventory(cache.store), config)));
  app.get("/v1/refs", (c) => c.json(referenceRows(takeInventory(cache.store))));
  app.get(
    "/v1/blobs",
    validator("query", (value) => parseWith(BLOBS_QUERY, value)),
    (c) => {
      const query = c.req.valid("query");
      const all = blobRows(takeInventory(cache.store)).sort((a, b) => (a.digest < b.digest ? -1 : 1));
      const start = query.cursor === undefined ? 0 : all.findIndex((b) => b.digest > query.cursor!);
      const page = start === -1 ? [] : all.slice(start, start + (query.limit ?? 100));
      const next = start !== -1 && start + page.length < all.length ? page.at(-1)?.digest : undefined;
      return c.json({ blobs: page, ...(next !== undefined && { next }) });
    },
  );

  app.post("/v1/pull", jsonBody(PULL_BODY), async (c) => {
    const body = c.req.valid("json");
    const ref = parseReference(body.ref);
    const result = await pullImage(cache, ref, {
      platform: parsePlatform(body.platform, body.plat),
      concurrency: config.concurrency,
    });
    return c.json(pullJson(result));
  });
  app.post("/v1/gc", jsonBody(GC_BODY), async (c) => {
    const body = c.req.valid("json");
    const report = await pruneCache(cache.store, {
      maxAgeMs: body.maxAge === undefined ? config.maxAgeMs : parseDuration(body.maxAge, '"maxAge"'),
      maxSizeBytes: body.maxSize === undefined ? config.maxSizeBytes : parseSize(body.maxSize, '"maxSize"'),
      graceMs: config.graceMs,
      dryRun: body.dryRun === true,
    });
    if (!report.dryRun) metrics.evictions += report.removed.length;
    return c.json(cleanupJson(report));
  });
  app.delete("/v1/refs/:ref{.+}", async (c) => {
    const name = formatReference(parseReference(c.req.param("ref")));
    return c.json(removalJson(await removeTargets(cache.store, [{ name }])));
  });
  app.delete("/v1/blobs/:digest", async (c) => {
    const digest = c.req.param("digest");
    if (!isDigest(digest)) throw new UsageError(`Invalid "digest": expected sha256:<64 hex>`);
    return c.json(removalJson(await removeTargets(cache.store, [{ digest: digest as Digest }])));
  });

  if (deps.upstream !== undefined)
    mountMirror(app, {
      cache,
      metrics,
      upstream: deps.upstream,
      limits: {
        maxConcurrentDownloads: config.maxConcurrentDownloads,
        maxConnections: config.maxConnections,
        chunkBytes: config.clientBufferBytes,
      },
    });

  app.notFound((c) =>
    c.json({ code: "ENOTFOUND", message: `No route for ${c.req.method} ${c.req.path.slice(0, 200)}` }, 404),
  );
  // The one place errors become responses: `{code, message}` with the status of the error's code.
  app.onError((error, c) => {
    metrics.upstreamError(error);
    if (error instanceof HTTPException) {
      if (error.res !== undefined) return error.getResponse();
      return c.json(
        {
          code: error.status === 401 || error.status === 403 ? "EAUTH" : error.status < 500 ? "EUSAGE" : "EINTERNAL",
          message: error.message,
        },
        error.status,
      );
    }
    if (error instanceof OcicacheError)
      return c.json({ code: error.code, message: error.message }, STATUS_OF[error.code]);
    return c.json({ code: "EINTERNAL", message: error.message }, 500);
  });
  return app;
}

/**
 * Mutating routes: no request from a web page of another origin (403), and
 * the admin token (`hono/bearer-auth`: compared in constant time over SHA-256
 * digests with Web Crypto, a 401 with `WWW-Authenticate` otherwise).
 */
function adminOnly(token: string, allowed: Set<string>): { sameOrigin: MiddlewareHandler; token: MiddlewareHandler } {
  const sameOrigin: MiddlewareHandler = async (c, next) => {
    const origin = c.req.header("origin");
    if (origin !== undefined && !isAllowedOrigin(origin, allowed)) {
      throw new HTTPException(403, { message: `Requests from the web page "${origin.slice(0, 80)}" are refused` });
    }
    await next();
  };
  const refused = (message: string) => ({ message: { code: "EAUTH", message } });
  const requireToken = bearerAuth({
    token,
    realm: "ocicache",
    noAuthenticationHeader: refused("This route needs Authorization: Bearer <token>"),
    invalidAuthenticationHeader: refused("This route needs Authorization: Bearer <token>"),
    invalidToken: refused("The token is not the admin token"),
  });
  return { sameOrigin, token: requireToken };
}

/** A JSON body checked with zod (`hono/validator`); a bad one is a usage error (400) naming the field. */
function jsonBody<T>(schema: z.ZodType<T>) {
  return validator("json", (value) => parseWith(schema, value));
}

/**
 * With `--htpasswd`, every route but `/healthz` and `/readyz` asks for credentials: a user of the file (Basic), or
 * the admin token (Bearer). The list of cached references, the metrics and the status page name what clients pulled.
 */
function clientsOnly(users: Htpasswd, token: string): MiddlewareHandler {
  const check = basicChecker(users);
  const admin = new TextEncoder().encode(`Bearer ${token}`);
  return async (c, next) => {
    if (c.req.path === "/healthz" || c.req.path === "/readyz") return next();
    const authorization = c.req.header("authorization");
    if (authorization !== undefined && /^Bearer /i.test(authorization)) {
      const given = new TextEncoder().encode(authorization);
      if (given.byteLength === admin.byteLength && timingSafeEqual(given, admin)) return next();
    } else if (await check(authorization)) {
      return next();
    }
    const headers = { "WWW-Authenticate": 'Basic realm="ocicache"' };
    if (c.req.path === "/v2" || c.req.path.startsWith("/v2/"))
      return c.json({ errors: [{ code: "UNAUTHORIZED", message: "This mirror needs credentials" }] }, 401, {
        ...headers,
        "Docker-Distribution-API-Version": "registry/2.0",
      });
    return c.json({ code: "EAUTH", message: "This server needs credentials (--htpasswd)" }, 401, headers);
  };
}

/** The status page loads nothing and runs nothing: its own inline styles only. */
const STATUS_PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Whether a `Host` header is `host[:port]`: a name or IPv4 address, or an IPv6 address in brackets (anything else,
 * `[evil]` for one, makes no URL).
 */
function isHostHeader(host: string): boolean {
  return /^(?:[a-z0-9._~-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i.test(host);
}

/**
 * Whether a `Host` header names this server: an IP address (DNS rebinding
 * needs a name), `localhost`, or a name allowed by configuration.
 */
function isAllowedHost(host: string, allowed: Set<string>): boolean {
  const name = hostName(host);
  return name === "localhost" || /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.startsWith("[") || allowed.has(name);
}

function isAllowedOrigin(origin: string, allowed: Set<string>): boolean {
  try {
    return isAllowedHost(new URL(origin).host, allowed);
  } catch {
    return false;
  }
}

/** The lowercase host name of `host[:port]` or `[v6]:port`. */
function hostName(host: string): string {
  const lower = host.trim().toLowerCase();
  if (lower.startsWith("[")) return lower.slice(0, lower.indexOf("]") + 1);
  const colon = lower.lastIndexOf(":");
  return colon === -1 ? lower : lower.slice(0, colon);
}

/** Parse with zod; a failure is a usage error (400) naming the field. */
function parseWith<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues.find((i) => i.code === "unrecognized_keys") ?? result.error.issues[0]!;
  const field = issue.code === "unrecognized_keys" ? issue.keys.join(", ") : issue.path.join(".") || "body";
  throw new UsageError(`Invalid "${field}": ${issue.code === "unrecognized_keys" ? "unknown field" : issue.message}`);
}

/** `undefined` when a file can be created in the cache's `tmp/`, else why not. */
function cacheWritable(cache: Cache): string | undefined {
  return probeWritable(cache.store.tmpDir)?.message;
}
