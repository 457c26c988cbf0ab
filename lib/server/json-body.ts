/**
 * What the admin API reads from a request, checked at the edge with zod: a JSON body (`jsonBody`) or a query
 * (`checkedQuery`). A body that is there but not JSON is never read as an empty one: a `POST /v1/gc` sent as a form
 * (curl's `-d` default) must not run with the defaults that delete. The answers: 415 for another content type,
 * 413 past `MAX_REQUEST_BODY_BYTES`, 400 naming the field for JSON that does not fit.
 *
 * @module
 */

import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { validator } from "hono/validator";
import type { z } from "zod";
import { UsageError } from "../errors.ts";

/** The largest request body read (a pull or a cleanup asks for a few fields). */
export const MAX_REQUEST_BODY_BYTES = 16 * 1024;

/**
 * The middlewares of a route that takes a JSON body checked by `schema` (`c.req.valid("json")` in the handler). A
 * request with no body at all is the empty object: every field at its default.
 *
 * @example A form body is refused, JSON is read
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { z } from "zod";
 * import { jsonBody } from "./json-body.ts";
 * import { errorResponse } from "./errors.ts";
 * const app = new Hono().onError(errorResponse(() => {}));
 * app.post("/", ...jsonBody(z.strictObject({ dryRun: z.boolean().optional() })), (c) => c.json(c.req.valid("json")));
 * const body = '{"dryRun":true}';
 * const form = await app.request("/", { method: "POST", body,
 *   headers: { "Content-Type": "application/x-www-form-urlencoded", "Content-Length": String(body.length) } });
 * assert.equal(form.status, 415);
 * const json = await app.request("/", { method: "POST", body,
 *   headers: { "Content-Type": "application/json", "Content-Length": String(body.length) } });
 * assert.deepEqual(await json.json(), { dryRun: true });
 * ```
 */
export function jsonBody<T>(schema: z.ZodType<T>) {
  return [
    bodyLimit({
      maxSize: MAX_REQUEST_BODY_BYTES,
      onError: () => {
        throw new HTTPException(413, { message: `The body is larger than ${MAX_REQUEST_BODY_BYTES} bytes` });
      },
    }),
    validator("json", (value, c) => {
      const type = c.req.header("content-type");
      if (!isJson(type) && hasBody(c.req.header("content-length"), c.req.header("transfer-encoding")))
        throw new HTTPException(415, {
          message: `The body must be JSON (Content-Type: application/json), not "${(type ?? "none").slice(0, 80)}"`,
        });
      return parseWith(schema, value);
    }),
  ] as const;
}

/**
 * The middleware of a route whose query is checked by `schema` (`c.req.valid("query")`).
 *
 * @example A query that does not fit is a 400
 * ```ts
 * import assert from "node:assert";
 * import { Hono } from "hono";
 * import { z } from "zod";
 * import { checkedQuery } from "./json-body.ts";
 * import { errorResponse } from "./errors.ts";
 * const app = new Hono().onError(errorResponse(() => {}));
 * app.get("/", checkedQuery(z.strictObject({ n: z.coerce.number().int() })), (c) => c.json(c.req.valid("query")));
 * assert.equal((await app.request("/?n=x")).status, 400);
 * assert.deepEqual(await (await app.request("/?n=2")).json(), { n: 2 });
 * ```
 */
export function checkedQuery<T>(schema: z.ZodType<T>) {
  return validator("query", (value) => parseWith(schema, value));
}

/** Parse with zod; a failure is a usage error (400) naming the field. */
function parseWith<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues.find((i) => i.code === "unrecognized_keys") ?? result.error.issues[0]!;
  const field = issue.code === "unrecognized_keys" ? issue.keys.join(", ") : issue.path.join(".") || "body";
  throw new UsageError(`Invalid "${field}": ${issue.code === "unrecognized_keys" ? "unknown field" : issue.message}`);
}

/** `application/json`, or a `+json` type, with parameters. */
function isJson(type: string | undefined): boolean {
  return type !== undefined && /^application\/([a-z0-9.-]+\+)?json\s*(;|$)/i.test(type);
}

function hasBody(length: string | undefined, encoding: string | undefined): boolean {
  return encoding !== undefined || (length !== undefined && length !== "0");
}
