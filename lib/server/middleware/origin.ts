/**
 * No changing request from a web page of another origin: a browser names the page's origin in `Origin`, and the
 * admin token alone does not stop a page that learned it. Hono's `csrf` middleware checks only form content types;
 * this one checks every request it guards.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { isAllowedHost } from "./host.ts";

/**
 * The middleware: a request whose `Origin` is not this server's (an IP address, `localhost`, an allowed name) is a
 * 403; one with no `Origin` (not from a browser) goes on.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { sameOrigin } from "./origin.ts";
 * const app = new Hono().use("*", sameOrigin(new Set())).post("/", (c) => c.text("ok"));
 * assert.equal((await app.request("/", { method: "POST", headers: { Origin: "https://evil.example" } })).status, 403);
 * assert.equal((await app.request("/", { method: "POST" })).status, 200);
 * ```
 */
export function sameOrigin(allowed: ReadonlySet<string>): MiddlewareHandler {
  return async (c, next) => {
    const origin = c.req.header("origin");
    if (origin !== undefined && !isAllowedOrigin(origin, allowed)) {
      throw new HTTPException(403, { message: `Requests from the web page "${origin.slice(0, 80)}" are refused` });
    }
    await next();
  };
}

function isAllowedOrigin(origin: string, allowed: ReadonlySet<string>): boolean {
  try {
    return isAllowedHost(new URL(origin).host, allowed);
  } catch {
    return false;
  }
}
