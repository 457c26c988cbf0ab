import { describe, expect, test } from "bun:test";
import { parseArguments } from "../../../lib/cli/args.ts";
import { UsageError } from "../../../lib/errors.ts";

const OPTIONS = {
  output: { type: "string", short: "o" },
  quiet: { type: "boolean", short: "q" },
  "insecure-registry": { type: "string", multiple: true },
} as const;

describe("parseArguments()", () => {
  test("reads long, short, = and repeated options among positionals", () => {
    const { values, positionals } = parseArguments(
      ["pull", "-q", "ref", "--output=out", "--insecure-registry", "a:5000", "--insecure-registry=b"],
      OPTIONS,
    );
    expect(values).toEqual({ quiet: true, output: "out", "insecure-registry": ["a:5000", "b"] });
    expect(positionals).toEqual(["pull", "ref"]);
    expect(parseArguments(["-oout"], OPTIONS).values.output).toBe("out");
    expect(parseArguments(["-o", "dir", "x"], OPTIONS)).toEqual({ values: { output: "dir" }, positionals: ["x"] });
  });

  test("short options cluster as getopt reads them: booleans, then one option that takes the rest or the next", () => {
    expect(parseArguments(["-qo", "dir"], OPTIONS).values).toEqual({ quiet: true, output: "dir" });
    expect(parseArguments(["-qodir"], OPTIONS).values).toEqual({ quiet: true, output: "dir" });
    expect(parseArguments(["-oq"], OPTIONS).values).toEqual({ output: "q" });
  });

  test("everything after -- is positional", () => {
    expect(parseArguments(["--", "-q", "--output"], OPTIONS).positionals).toEqual(["-q", "--output"]);
  });

  test.each([
    [["--nope"], 'unknown option "--nope"'],
    [["-x"], 'unknown option "-x"'],
    [["-qx"], 'unknown option "-x"'],
    [["-qo"], 'option "-o" needs a value'],
    [["--output"], 'option "--output" needs a value'],
    [["-o"], 'option "-o" needs a value'],
    [["--quiet=yes"], 'option "--quiet" takes no value'],
  ])("%j is a usage error: %s", (argv, message) => {
    expect(() => parseArguments(argv, OPTIONS)).toThrow(UsageError);
    expect(() => parseArguments(argv, OPTIONS)).toThrow(message);
  });
});
