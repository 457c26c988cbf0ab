/**
 * The one place where an error of the admin API becomes a response: `{code, message}` with the status of its code
 * (`docs/serving.md`). The mirror answers its own errors in the registry's format (`answers.ts`).
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { OcicacheError } from "../errors.ts";

/** HTTP statuses of the error codes. */
const STATUS_OF = {
  EUSAGE: 400,
  ENOTFOUND: 404,
  EINTEGRITY: 502,
  EREGISTRY: 502,
  EAUTH: 502,
  ESTORE: 500,
  EPOLICY: 403,
} as const;

/**
 * The `onError` handler; `observe` sees every error first (the metrics count upstream failures).
 *
 * @example A usage error is a 400
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { UsageError } from "../errors.ts";
 * import { errorResponse } from "./errors.ts";
 * const app = new Hono().onError(errorResponse(() => {})).get("/", () => { throw new UsageError("Invalid \"n\""); });
 * const response = await app.request("/");
 * assert.equal(response.status, 400);
 * assert.deepEqual(await response.json(), { code: "EUSAGE", message: 'Invalid "n"' });
 * ```
 */
export function errorResponse(observe: (error: Error) => void) {
  return (error: Error, c: Context): Response => {
    observe(error);
    if (error instanceof HTTPException) {
      if (error.res !== undefined) return error.getResponse();
      const code = error.status === 401 || error.status === 403 ? "EAUTH" : error.status < 500 ? "EUSAGE" : "EINTERNAL";
      return c.json({ code, message: error.message }, error.status);
    }
    if (error instanceof OcicacheError)
      return c.json({ code: error.code, message: error.message }, STATUS_OF[error.code]);
    return c.json({ code: "EINTERNAL", message: error.message }, 500);
  };
}

/** The `notFound` handler: the route that is not there, named. */
export function noRoute(c: Context): Response {
  return c.json({ code: "ENOTFOUND", message: `No route for ${c.req.method} ${c.req.path.slice(0, 200)}` }, 404);
}
