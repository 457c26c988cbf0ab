/**
 * Byte ranges of the mirror's blob responses.
 *
 * @module
 */

/**
 * The one byte range of a `Range: bytes=start-end` header (RFC 9110, section
 * 14.1.2) within a blob of `size` bytes: `start-`, `start-end` (cut at the
 * end), or `-suffix` (the last bytes); `undefined` when it cannot be
 * satisfied (a 416). Several ranges are not answered with one.
 *
 * @example Ranges of a 10-byte blob
 * ```ts
 * import assert from "node:assert";
 * import { parseRange } from "./range.ts";
 * assert.deepEqual(parseRange("bytes=2-", 10), [2, 9]);
 * assert.deepEqual(parseRange("bytes=-3", 10), [7, 9]);
 * assert.equal(parseRange("bytes=10-", 10), undefined);
 * ```
 */
export function parseRange(header: string, size: number): [number, number] | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null || (match[1] === "" && match[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (match[1] === "") {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  return start <= end && start < size ? [start, end] : undefined;
}
