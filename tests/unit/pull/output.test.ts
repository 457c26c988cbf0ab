import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../../lib/oci/digest.ts";
import { OutputTee } from "../../../lib/pull/output.ts";
import { removeUnfinished } from "../../../lib/store/writer.ts";
import { useTempDir } from "../../helpers/env.ts";

const tmp = useTempDir("output");
const bytes = (text: string) => new TextEncoder().encode(text);

describe("OutputTee", () => {
  test("holds exactly the bytes of one download from its first byte; a restart starts the file over", () => {
    const tee = new OutputTee(tmp.path, digestOf("x"));
    tee.write(bytes("wrong bytes from a mirror"));
    tee.restart();
    tee.write(bytes("right "));
    tee.write(bytes("bytes"));
    const dest = join(tmp.path, "kernel");
    expect(tee.finish(dest, 11)).toBe(true);
    expect(readFileSync(dest, "utf8")).toBe("right bytes");
    expect(statSync(dest).mode & 0o777).toBe(0o644);
    expect(existsSync(tee.path)).toBe(false);
  });

  test("once put in place, discarding it removes nothing: its name may be another pull's tee by then", () => {
    const first = new OutputTee(tmp.path, digestOf("y"));
    first.write(bytes("y"));
    expect(first.finish(join(tmp.path, "first"), 1)).toBe(true);
    const second = new OutputTee(tmp.path, digestOf("y"));
    second.write(bytes("y"));
    first.discard();
    expect(existsSync(second.path)).toBe(true);
    expect(second.finish(join(tmp.path, "second"), 1)).toBe(true);
    expect(readFileSync(join(tmp.path, "second"), "utf8")).toBe("y");
  });

  test("a resumed download abandons it, a short one is not whole: neither is put in place", () => {
    const resumed = new OutputTee(tmp.path, digestOf("a"));
    resumed.abandon();
    resumed.write(bytes("tail"));
    expect(resumed.finish(join(tmp.path, "a"), 4)).toBe(false);
    const short = new OutputTee(tmp.path, digestOf("b"));
    short.write(bytes("abc"));
    expect(short.finish(join(tmp.path, "b"), 4)).toBe(false);
    short.discard();
    expect([existsSync(join(tmp.path, "a")), existsSync(join(tmp.path, "b")), existsSync(short.path)]).toEqual([
      false,
      false,
      false,
    ]);
  });

  test("is made with O_EXCL (a file planted at its name is not written through), and a signal removes it", () => {
    const first = new OutputTee(tmp.path, digestOf("c"));
    expect(() => new OutputTee(tmp.path, digestOf("c"))).toThrow();
    expect(existsSync(first.path)).toBe(true);
    removeUnfinished();
    expect(existsSync(first.path)).toBe(false);
  });
});
