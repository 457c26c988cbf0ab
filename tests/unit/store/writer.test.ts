import { describe, expect, test } from "bun:test";
import { existsSync, linkSync, lstatSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DigestMismatchError, SizeMismatchError } from "../../../lib/errors.ts";
import { digestOf } from "../../../lib/oci/digest.ts";
import { openRegular } from "../../../lib/oci/read.ts";
import { BlobWriter } from "../../../lib/store/writer.ts";
import { useTempDir } from "../../helpers/env.ts";

const tmp = useTempDir("writer");
const bytes = new TextEncoder().encode("kernel bytes");
const expected = { digest: digestOf(bytes), size: bytes.length };

describe("BlobWriter", () => {
  test("commit checks size and digest, makes the file read-only and renames it into place", () => {
    const writer = BlobWriter.create(join(tmp.path, "a.part"));
    writer.write(bytes.subarray(0, 4));
    writer.write(bytes.subarray(4));
    const result = writer.commit(join(tmp.path, "blob"), expected);
    expect(result).toEqual({ status: "committed", path: join(tmp.path, "blob"), ...expected });
    expect(statSync(join(tmp.path, "blob")).mode & 0o777).toBe(0o444);
    expect(existsSync(join(tmp.path, "a.part"))).toBe(false);
  });

  test("a wrong digest fails the commit with a DigestMismatchError and nothing is placed", () => {
    const writer = BlobWriter.create(join(tmp.path, "a.part"));
    writer.write(new TextEncoder().encode("kernel bytez"));
    const result = writer.commit(join(tmp.path, "blob"), expected);
    expect(result.status === "failed" && result.error).toBeInstanceOf(DigestMismatchError);
    writer.abort();
    expect(existsSync(join(tmp.path, "blob"))).toBe(false);
    expect(existsSync(join(tmp.path, "a.part"))).toBe(false);
  });

  test("a write past the limit is refused before a byte of it is written", () => {
    const writer = BlobWriter.create(join(tmp.path, "a.part"), { limit: 4 });
    writer.write(bytes.subarray(0, 3));
    expect(() => writer.write(bytes.subarray(3, 5))).toThrow(SizeMismatchError);
    expect(writer.written).toBe(3);
    expect(statSync(join(tmp.path, "a.part")).size).toBe(3);
    writer.abort();
  });

  test("create refuses anything at its path, a planted link included, and writes nothing through it", () => {
    const target = join(tmp.path, "target");
    writeFileSync(target, "keep");
    symlinkSync(target, join(tmp.path, "a.part"));
    expect(() => BlobWriter.create(join(tmp.path, "a.part"))).toThrow(/EEXIST/);
    expect(readFileSync(target, "utf8")).toBe("keep");
  });

  test("resume hashes what a partial file holds, hands it to the consumer, and goes on from there", async () => {
    writeFileSync(join(tmp.path, "b.partial"), bytes.subarray(0, 5));
    const seen: Uint8Array[] = [];
    const writer = await BlobWriter.resume(join(tmp.path, "b.partial"), {
      onExisting: (chunk) => void seen.push(chunk),
    });
    expect(writer.written).toBe(5);
    expect(Buffer.concat(seen)).toEqual(Buffer.from(bytes.subarray(0, 5)));
    writer.write(bytes.subarray(5));
    expect(writer.commit(join(tmp.path, "blob"), expected).status).toBe("committed");
  });

  test("resume replaces a partial that is a link or hardlink to another file, which stays as it was", async () => {
    const victim = join(tmp.path, "victim");
    writeFileSync(victim, "the user's file");
    symlinkSync(victim, join(tmp.path, "link.partial"));
    linkSync(victim, join(tmp.path, "hard.partial"));
    for (const name of ["link.partial", "hard.partial"]) {
      const writer = await BlobWriter.resume(join(tmp.path, name));
      expect(writer.written).toBe(0);
      writer.write(bytes);
      writer.close();
      expect(lstatSync(join(tmp.path, name)).isFile()).toBe(true);
    }
    expect(readFileSync(victim, "utf8")).toBe("the user's file");
  });
});

describe("openRegular()", () => {
  test("opens a regular file, and refuses a link and a FIFO without blocking", () => {
    writeFileSync(join(tmp.path, "file"), "x");
    symlinkSync(join(tmp.path, "file"), join(tmp.path, "link"));
    Bun.spawnSync(["mkfifo", join(tmp.path, "fifo")]);
    expect(typeof openRegular(join(tmp.path, "file"))).toBe("number");
    expect(() => openRegular(join(tmp.path, "link"))).toThrow(/ELOOP/);
    expect(() => openRegular(join(tmp.path, "fifo"))).toThrow(/not a regular file/);
  });
});
