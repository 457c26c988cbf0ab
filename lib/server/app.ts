/**
 * The Hono app of `ocicache serve`, composed: the Host check, timing, secure headers and (with `--htpasswd`)
 * credentials on every request; the status page, health and metrics (`pages`); the admin API under `/v1`
 * (`admin`); with an upstream, the read side of the OCI distribution API under `/v2` (`mirror`); one error mapper
 * (`errors`). Loaded only by `serve`.
 *
 * @module
 */

import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { Config } from "../config/config.ts";
import type { Policy } from "../oci/policy.ts";
import type { Cache } from "../pull/cache.ts";
import { adminRoutes } from "./admin.ts";
import { errorResponse, noRoute } from "./errors.ts";
import type { Htpasswd } from "./htpasswd.ts";
import type { Metrics } from "./metrics.ts";
import { clientsOnly } from "./middleware/clients.ts";
import { hostCheck, hostName } from "./middleware/host.ts";
import { timing } from "./middleware/timing.ts";
import { mirrorRoutes } from "./mirror.ts";
import { pages } from "./pages.ts";
import { PolicyGate } from "./policy-gate.ts";

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
  /** Every route but health needs Basic credentials from these users (or the admin token). */
  htpasswd?: Htpasswd;
  /** The mirror serves only manifests this signature policy accepts (`serve --policy`). */
  policy?: Policy;
}

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
  const { config, cache, metrics } = deps;
  const allowed = new Set((deps.allowedHosts ?? []).map((h) => hostName(h)));
  const app = new Hono();
  app.use("*", hostCheck(allowed), timing(metrics));
  app.use("*", secureHeaders({ strictTransportSecurity: false, crossOriginResourcePolicy: false }));
  if (deps.htpasswd !== undefined) app.use("*", clientsOnly(deps.htpasswd, deps.token));
  app.route("/", pages({ config, cache, metrics, ...(deps.upstream !== undefined && { upstream: deps.upstream }) }));
  app.route("/v1", adminRoutes({ config, cache, metrics, token: deps.token, allowed }));
  if (deps.upstream !== undefined) {
    const limits = {
      maxConcurrentDownloads: config.maxConcurrentDownloads,
      maxConnections: config.maxConnections,
      chunkBytes: config.clientBufferBytes,
    };
    const gate = deps.policy === undefined ? undefined : new PolicyGate(deps.policy);
    app.route("/v2", mirrorRoutes({ cache, metrics, upstream: deps.upstream, limits, ...(gate && { gate }) }));
  }
  app.notFound(noRoute);
  app.onError(errorResponse((error) => metrics.upstreamError(error)));
  return app;
}
