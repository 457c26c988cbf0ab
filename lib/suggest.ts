/**
 * What a user may have meant: the known name closest to a mistyped one (an option, a config key), by edit distance.
 *
 * @module
 */

/**
 * The candidate within two edits of `name` (case aside), the closest first; `undefined` when none is that close.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { closest } from "./suggest.ts";
 * assert.equal(closest("otput", ["output", "offline"]), "output");
 * assert.equal(closest("nothing", ["output"]), undefined);
 * ```
 */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(candidate.toLowerCase(), name.toLowerCase());
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}

/** Levenshtein's distance between two short strings. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}
