/**
 * Durations (`90s`, `30m`, `12h`, `30d`, `1d12h`) and byte sizes (`500MB`,
 * `10GiB`) as people write them, and back: what `formatDuration` writes,
 * `parseDuration` reads.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Parse a duration into milliseconds: one or more parts such as `1d12h`, `1h 30m` or `1.5h`; a bare `0` is zero.
 *
 * @throws {UsageError} naming `what` when the value is not a duration.
 * @example
 * ```ts
 * import { parseDuration } from "./units.ts";
 * console.log(parseDuration("90m", "--fresh-for")); // 5400000
 * console.log(parseDuration("1d12h", "--max-age")); // 129600000
 * ```
 */
export function parseDuration(input: string, what: string): number {
  const trimmed = input.trim();
  if (trimmed === "0") return 0;
  if (!DURATION_RE.test(trimmed))
    throw new UsageError(
      `Cannot parse ${what} "${input.slice(0, 40)}": expected a duration such as 90s, 30m, 12h, 30d or 1d12h`,
    );
  let ms = 0;
  for (const [, amount, unit] of trimmed.matchAll(DURATION_PART_RE)) ms += Number(amount) * DURATION_UNITS_MS[unit!]!;
  return Math.round(ms);
}

const DURATION_PART = String.raw`(\d+(?:\.\d+)?) ?(ms|s|m|h|d|w)`;
const DURATION_RE = new RegExp(`^${DURATION_PART}(?: ?${DURATION_PART})*$`);
const DURATION_PART_RE = new RegExp(DURATION_PART, "g");

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 2 ** 10,
  kib: 2 ** 10,
  mi: 2 ** 20,
  mib: 2 ** 20,
  gi: 2 ** 30,
  gib: 2 ** 30,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

/**
 * Parse a byte size: `500MB` (powers of 1000), `10GiB` (powers of 1024), or bare bytes.
 *
 * @throws {UsageError} naming `what` when the value is not a size.
 * @example
 * ```ts
 * import { parseSize } from "./units.ts";
 * console.log(parseSize("10GiB", "--max-size")); // 10737418240
 * ```
 */
export function parseSize(input: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  const unit = SIZE_UNITS[(match?.[2] ?? "").toLowerCase() || "b"];
  if (match === null || unit === undefined) {
    throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected a size such as 500MB or 10GiB`);
  }
  return Math.round(Number(match[1]) * unit);
}

/**
 * Format milliseconds for people: `3d 4h`, `12m`, `850 ms`.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./units.ts";
 * console.log(formatDuration(90 * 60_000)); // 1h 30m
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, seconds] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    if (rest >= seconds && parts.length < 2) {
      parts.push(`${Math.floor(rest / seconds)}${unit}`);
      rest %= seconds;
    }
  }
  return parts.join(" ");
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
