/**
 * Work over a list whose length someone else chose (an index's children, an image's layers) with a bounded number
 * of tasks at once: never `Promise.all` over a count a registry controls.
 *
 * @module
 */

/**
 * `fn` over `items`, at most `limit` at once, the results in the items' order; the first failure is thrown once
 * every task has settled, so that nothing runs on after it.
 *
 * @example Two at once
 * ```ts
 * import assert from "node:assert";
 * import { mapLimit } from "./map-limit.ts";
 * let running = 0;
 * let most = 0;
 * const doubled = await mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
 *   most = Math.max(most, ++running);
 *   await Bun.sleep(1);
 *   running--;
 *   return n * 2;
 * });
 * assert.deepEqual(doubled, [2, 4, 6, 8, 10]);
 * assert.equal(most, 2);
 * ```
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const at = next++;
      try {
        results[at] = await fn(items[at]!);
      } catch (error) {
        errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
  return results;
}
