import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IntegrityError, NotFoundError } from "../../../lib/errors.ts";
import { extractTarMembers, findTarMember } from "../../../lib/oci/tar.ts";
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

describe("PAX records (finding 7)", () => {
  /** A ustar header block of `type` and `size`, with its checksum. */
  function header(name: string, type: string, size: number): Uint8Array {
    const block = new Uint8Array(512);
    const put = (text: string, at: number) => block.set(new TextEncoder().encode(text), at);
    put(name, 0);
    put("0000644\0", 100);
    put(`${size.toString(8).padStart(11, "0")}\0`, 124);
    put("        ", 148);
    put(type, 156);
    put("ustar\0", 257);
    put("00", 263);
    const sum = block.reduce((a, b) => a + b, 0);
    put(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    return block;
  }
  function padded(bytes: Uint8Array): Uint8Array {
    const out = new Uint8Array(Math.ceil(bytes.length / 512) * 512);
    out.set(bytes);
    return out;
  }
  function pax(key: string, value: string): Uint8Array {
    const body = ` ${key}=${value}\n`;
    let length = body.length + 1;
    while (`${length}${body}`.length !== length) length++;
    const record = new TextEncoder().encode(`${length}${body}`);
    return new Uint8Array([...header("PaxHeader", "x", record.length), ...padded(record)]);
  }
  /** `count` PAX headers, each with a key of its own, before the kernel. */
  function layer(count: number): Uint8Array {
    const parts = Array.from({ length: count }, (_, i) => pax(`ocicache.k${i}`, "v"));
    const content = new TextEncoder().encode("a kernel");
    parts.push(header("unikraft/bin/kernel", "0", content.length), padded(content), new Uint8Array(1024));
    return new Uint8Array(parts.flatMap((p) => [...p]));
  }

  test("a few PAX headers before a member are read, only path and size kept", async () => {
    const tar = layer(3);
    const path = write("few-pax.tar", tar);
    expect(findTarMember(path, "unikraft/bin/kernel", tar.length).size).toBe(8);
    const found = await extractTarMembers(streamOf(tar), new Set(["unikraft/bin/kernel"]), () => ({ write() {} }), "l");
    expect([...found]).toEqual(["unikraft/bin/kernel"]);
  });

  test("more than 16 PAX headers before one member are refused by both walkers, before any time is spent", async () => {
    const tar = layer(2000);
    const path = write("many-pax.tar", tar);
    expect(() => findTarMember(path, "unikraft/bin/kernel", tar.length)).toThrow(IntegrityError);
    expect(() => findTarMember(path, "unikraft/bin/kernel", tar.length)).toThrow(/more than 16 header records/);
    const walk = extractTarMembers(streamOf(tar), new Set(["unikraft/bin/kernel"]), () => ({ write() {} }), "l");
    await expect(walk).rejects.toThrow(/more than 16 header records/);
  });
});

async function* streamOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  for (let at = 0; at < bytes.length; at += 4096) yield bytes.subarray(at, at + 4096);
}
