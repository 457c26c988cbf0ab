/**
 * Durations (`90s`, `30m`, `12h`, `30d`) and byte sizes (`500MB`, `10GiB`)
 * as people write them, and back.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parse a duration into milliseconds; a bare `0` is zero.
 *
 * @throws {UsageError} naming `what` when the value is not a duration.
 * @example
 * ```ts
 * import { parseDuration } from "./units.ts";
 * console.log(parseDuration("90m", "--fresh-for")); // 5400000
 * ```
 */
export function parseDuration(input: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(input.trim());
  if (input.trim() === "0") return 0;
  if (match === null) throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected a duration such as 90s, 30m, 12h or 30d`);
  return Math.round(Number(match[1]) * DURATION_UNITS_MS[match[2]!]!);
}

/**
 * Format bytes for people: `1.5 MiB`.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./units.ts";
 * console.log(formatBytes(1536 * 1024)); // 1.5 MiB
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
