/**
 * With `--htpasswd`, who may talk to `serve` at all: every route but `/healthz` and `/readyz` asks for a user of the
 * file (Basic) or the admin token (Bearer). The list of cached references, the metrics and the status page name
 * what clients pulled.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { basicChecker, type Htpasswd } from "../htpasswd.ts";

/**
 * The middleware. A refused request under `/v2/` gets the registry's error format, so that clients say why.
 *
 * @example Health needs no credentials, the rest does
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { clientsOnly } from "./clients.ts";
 * const users = new Map([["ada", "$2b$05$" + "a".repeat(53)]]);
 * const app = new Hono().use("*", clientsOnly(users, "t".repeat(32))).get("*", (c) => c.text("ok"));
 * assert.equal((await app.request("/healthz")).status, 200);
 * assert.equal((await app.request("/v1/refs")).status, 401);
 * const admin = { headers: { Authorization: `Bearer ${"t".repeat(32)}` } };
 * assert.equal((await app.request("/v1/refs", admin)).status, 200);
 * ```
 */
export function clientsOnly(users: Htpasswd, token: string): MiddlewareHandler {
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
