import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IntegrityError, NotFoundError } from "../../../lib/errors.ts";
import { findTarMember } from "../../../lib/oci/tar.ts";
import { makeTar } from "../../helpers/images.ts";

const dir = mkdtempSync(join(tmpdir(), "ocicache-tar-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const kernel = new Uint8Array(70_001).map((_, i) => (i * 7) % 256);
const longName = `unikraft/${"deep/".repeat(30)}kernel`;

describe("findTarMember()", () => {
  test("finds a file's byte range in a tar made by GNU tar (pax format)", () => {
    const tar = makeTar({ "unikraft/bin/kernel": kernel, "unikraft/bin/initrd": new Uint8Array(10) });
    const path = write("pax.tar", tar);
    const range = findTarMember(path, "unikraft/bin/kernel", tar.length);
    expect(range.size).toBe(kernel.length);
    expect(readFileSync(path).subarray(range.offset, range.offset + range.size)).toEqual(Buffer.from(kernel));
  });

  test("follows a name longer than 100 characters", () => {
    const tar = makeTar({ [longName]: kernel });
    const path = write("long.tar", tar);
    const range = findTarMember(path, longName, tar.length);
    expect(readFileSync(path).subarray(range.offset, range.offset + range.size)).toEqual(Buffer.from(kernel));
  });

  test("reports a missing member as not found", () => {
    const tar = makeTar({ "etc/hostname": new Uint8Array(3) });
    expect(() => findTarMember(write("missing.tar", tar), "unikraft/bin/kernel", tar.length)).toThrow(NotFoundError);
  });

  test("refuses a corrupt header", () => {
    const tar = makeTar({ "unikraft/bin/kernel": kernel });
    tar[600]! ^= 0xff;
    tar[10]! ^= 0xff;
    expect(() => findTarMember(write("bad.tar", tar), "unikraft/bin/kernel", tar.length)).toThrow(IntegrityError);
  });

  test("refuses a member that runs past the end of the layer", () => {
    const tar = makeTar({ "unikraft/bin/kernel": kernel });
    const cut = tar.length - 40_000;
    expect(() => findTarMember(write("short.tar", tar.subarray(0, cut)), "unikraft/bin/kernel", cut)).toThrow(
      IntegrityError,
    );
  });
});
