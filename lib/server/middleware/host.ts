/**
 * The `Host` check of every request to `serve`: a web page whose name resolves to this address (DNS rebinding) must
 * not reach the API or the mirror through a browser. An IP address, `localhost` or an allowed name is answered; any
 * other name is a 421, and a `Host` no URL can be made of (`[evil]`) a 400 before anything reads the request's URL.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";

/**
 * The middleware, for the names in `allowed` (the listen host, `--allowed-host`) besides IP addresses and
 * `localhost`.
 *
 * @example A foreign name is refused
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { hostCheck } from "./host.ts";
 * const app = new Hono().use("*", hostCheck(new Set())).get("/", (c) => c.text("ok"));
 * assert.equal((await app.request("http://127.0.0.1/")).status, 200);
 * assert.equal((await app.request("http://127.0.0.1/", { headers: { Host: "evil.example" } })).status, 421);
 * assert.equal((await app.request("http://127.0.0.1/", { headers: { Host: "[evil]" } })).status, 400);
 * ```
 */
export function hostCheck(allowed: ReadonlySet<string>): MiddlewareHandler {
  return async (c, next) => {
    // No Host header: a request made in this process (`app.request`), whose URL names the host.
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    if (!isHostHeader(host)) throw new HTTPException(400, { message: "The Host header is not a host name" });
    if (!isAllowedHost(host, allowed)) {
      throw new HTTPException(421, {
        message: `Requests for the host "${host.slice(0, 80)}" are not answered here (allow it with --allowed-host)`,
      });
    }
    await next();
  };
}

/**
 * Whether a `Host` header names this server: an IP address (DNS rebinding needs a name), `localhost`, or a name
 * allowed by configuration.
 */
export function isAllowedHost(host: string, allowed: ReadonlySet<string>): boolean {
  const name = hostName(host);
  return name === "localhost" || /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.startsWith("[") || allowed.has(name);
}

/** The lowercase host name of `host[:port]` or `[v6]:port`. */
export function hostName(host: string): string {
  const lower = host.trim().toLowerCase();
  if (lower.startsWith("[")) return lower.slice(0, lower.indexOf("]") + 1);
  const colon = lower.lastIndexOf(":");
  return colon === -1 ? lower : lower.slice(0, colon);
}

/** Whether a `Host` header is `host[:port]`: a name or IPv4 address, or an IPv6 address in brackets. */
function isHostHeader(host: string): boolean {
  return /^(?:[a-z0-9._~-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i.test(host);
}
