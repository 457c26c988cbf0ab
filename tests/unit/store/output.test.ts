import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../../lib/oci/digest.ts";
import { OutputTee } from "../../../lib/store/output.ts";
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

  test("two tees of one blob in one directory have names of their own, and a signal removes both", () => {
    const first = new OutputTee(tmp.path, digestOf("c"));
    const second = new OutputTee(tmp.path, digestOf("c"));
    expect(first.path).not.toBe(second.path);
    expect([existsSync(first.path), existsSync(second.path)]).toEqual([true, true]);
    removeUnfinished();
    expect([existsSync(first.path), existsSync(second.path)]).toEqual([false, false]);
  });
});

describe("OutputTee in an output directory someone else can write (finding 14)", () => {
  test("its temp file swapped for a link during the download: no file of theirs is chmodded or put in place", () => {
    const victim = join(tmp.path, "victim");
    writeFileSync(victim, "someone else's file", { mode: 0o600 });
    const tee = new OutputTee(tmp.path, digestOf("kernel bytes"));
    tee.write(bytes("kernel bytes"));
    rmSync(tee.path);
    symlinkSync(victim, tee.path);
    const dest = join(tmp.path, "kernel");
    expect(tee.finish(dest, 12)).toBe(false);
    expect(statSync(victim).mode & 0o777).toBe(0o600);
    expect(existsSync(dest)).toBe(false);
    expect(readFileSync(victim, "utf8")).toBe("someone else's file");
  });

  test("its name is random: a link planted under the old predictable name is never written through", () => {
    const victim = join(tmp.path, "victim");
    writeFileSync(victim, "someone else's file");
    const digest = digestOf("z");
    symlinkSync(victim, join(tmp.path, `.ocicache-${digest.slice(7, 23)}.out`));
    const tee = new OutputTee(tmp.path, digest);
    tee.write(bytes("z"));
    expect(tee.finish(join(tmp.path, "kernel"), 1)).toBe(true);
    expect(readFileSync(victim, "utf8")).toBe("someone else's file");
    expect(readFileSync(join(tmp.path, "kernel"), "utf8")).toBe("z");
  });
});
