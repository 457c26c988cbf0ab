import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { digestOf } from "../../../lib/oci/digest.ts";
import { OutputTee } from "../../../lib/pull/output.ts";
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
    tee.close();
    expect(tee.complete(11)).toBe(true);
    expect(readFileSync(tee.path, "utf8")).toBe("right bytes");
  });

  test("a resumed download abandons it; a short one is not complete", () => {
    const resumed = new OutputTee(tmp.path, digestOf("a"));
    resumed.abandon();
    resumed.write(bytes("tail"));
    expect(resumed.complete(4)).toBe(false);
    const short = new OutputTee(tmp.path, digestOf("b"));
    short.write(bytes("abc"));
    expect(short.complete(4)).toBe(false);
  });

  test("is made with O_EXCL: a file planted at its name is not written through", () => {
    const first = new OutputTee(tmp.path, digestOf("c"));
    first.close();
    expect(() => new OutputTee(tmp.path, digestOf("c"))).toThrow();
    expect(existsSync(first.path)).toBe(true);
  });
});
