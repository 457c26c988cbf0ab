/**
 * JSON from outside (a registry, the cache, a file a user points at) taken as an object only when it is one: `null`,
 * a list or a bare value is not, and reading a key of it must not throw.
 *
 * @module
 */

/**
 * Whether a parsed JSON value is an object: not `null`, not a list.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isObject } from "./json.ts";
 * assert.equal(isObject({ layers: [] }), true);
 * assert.equal(isObject(null), false);
 * assert.equal(isObject([1]), false);
 * ```
 */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Bytes or text parsed as a JSON object; `undefined` when they are not JSON, or JSON but not an object.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseObject } from "./json.ts";
 * assert.deepEqual(parseObject('{"a":1}'), { a: 1 });
 * assert.equal(parseObject("null"), undefined);
 * assert.equal(parseObject(new TextEncoder().encode("{not json")), undefined);
 * ```
 */
export function parseObject(input: Uint8Array | string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(typeof input === "string" ? input : new TextDecoder().decode(input));
    return isObject(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}
