import { describe, expect, test } from "bun:test";
import { UsageError } from "../../lib/errors.ts";
import { formatBytes, formatDuration, parseDuration, parseSize } from "../../lib/units.ts";

describe("parseDuration()", () => {
  test.each([
    ["0", 0],
    ["90s", 90_000],
    ["10m", 600_000],
    ["12h", 43_200_000],
    ["30d", 30 * 86_400_000],
    ["2w", 14 * 86_400_000],
    ["1.5h", 5_400_000],
    ["1d12h", 36 * 3_600_000],
    ["1h 30m", 5_400_000],
    ["250 ms", 250],
  ] as const)("%p is %p ms", (input, ms) => {
    expect(parseDuration(input, '"maxAge"')).toBe(ms);
  });

  test("what formatDuration writes, parseDuration reads", () => {
    for (const ms of [250, 90_000, 5_400_000, 36 * 3_600_000, 30 * 86_400_000])
      expect(parseDuration(formatDuration(ms), "x")).toBe(ms);
  });

  test.each(["", "soon", "10", "-1h", "10 minutes", "10x", "1d12", "h1", "1h  30m"])(
    "%p is a usage error naming the setting",
    (input) => {
      const error = (() => {
        try {
          return parseDuration(input, '"maxAge"');
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).message).toContain('"maxAge"');
    },
  );
});

describe("parseSize()", () => {
  test.each([
    ["0", 0],
    ["1024", 1024],
    ["500MB", 500_000_000],
    ["10GiB", 10 * 2 ** 30],
    ["1KiB", 1024],
    ["10 GB", 10_000_000_000],
  ] as const)("%p is %p bytes", (input, bytes) => {
    expect(parseSize(input, '"maxSize"')).toBe(bytes);
  });

  test.each(["", "lots", "-5", "1.5.2GB"])("%p is a usage error", (input) => {
    expect(() => parseSize(input, '"maxSize"')).toThrow(UsageError);
  });
});

describe("formatBytes() and formatDuration()", () => {
  test("print sizes and durations a person reads at a glance", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toMatch(/^1\.5 (KiB|kB)$/);
    expect(formatDuration(90_000)).toMatch(/^1(\.5)? ?m|^90 ?s/);
  });
});
