import { describe, expect, test } from "bun:test";
import { parseRange } from "../../../lib/server/range.ts";

describe("parseRange()", () => {
  test.each([
    ["bytes=0-3", [0, 3]],
    ["bytes=2-", [2, 9]],
    ["bytes=5-100", [5, 9]],
    ["bytes=-3", [7, 9]],
    ["bytes=-100", [0, 9]],
    [" bytes=9-9 ", [9, 9]],
  ] as const)("%p of 10 bytes is %p", (header, range) => {
    expect(parseRange(header, 10)).toEqual([...range]);
  });

  test.each(["bytes=10-", "bytes=4-2", "bytes=-0", "bytes=-", "bytes=0-1,4-5", "items=0-1", "bytes=a-b", ""])(
    "%p of 10 bytes cannot be satisfied",
    (header) => {
      expect(parseRange(header, 10)).toBeUndefined();
    },
  );

  test("no range of an empty blob can be satisfied", () => {
    expect(parseRange("bytes=0-", 0)).toBeUndefined();
  });
});
