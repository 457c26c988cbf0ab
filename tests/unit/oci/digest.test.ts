import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DigestMismatchError, SizeMismatchError, UsageError } from "../../../lib/errors.ts";
import { digestOf, hashFile, parseDigest, Verifier, verifyStream } from "../../../lib/oci/digest.ts";

const bytes = new TextEncoder().encode("unikraft kernel bytes");
const expected = { digest: digestOf(bytes), size: bytes.length };

describe("parseDigest()", () => {
  test("accepts sha256 with 64 lowercase hex digits", () => {
    expect(parseDigest(expected.digest)).toBe(expected.digest);
  });

  test.each([
    "sha256:../../etc/passwd",
    `sha256:${"A".repeat(64)}`,
    `sha256:${"a".repeat(63)}`,
    `sha256:${"a".repeat(65)}`,
    `sha256:${"a".repeat(63)}\0`,
    `sha512:${"a".repeat(128)}`,
    "md5:abc",
    "/etc/passwd",
    "",
  ])("rejects %j with a usage error", (input) => {
    expect(() => parseDigest(input)).toThrow(UsageError);
  });

  test("names an unsupported algorithm", () => {
    expect(() => parseDigest(`sha512:${"a".repeat(128)}`)).toThrow(/unsupported algorithm "sha512"/);
  });
});

describe("Verifier", () => {
  test("passes the right bytes in any chunking", () => {
    const verifier = new Verifier(expected);
    verifier.update(bytes.subarray(0, 3));
    verifier.update(bytes.subarray(3));
    expect(() => verifier.finish()).not.toThrow();
    expect(verifier.received).toBe(bytes.length);
  });

  test("refuses a byte past the expected size at once", () => {
    const verifier = new Verifier({ ...expected, size: 4 });
    expect(() => verifier.update(bytes)).toThrow(SizeMismatchError);
  });

  test("refuses short content at the end", () => {
    const verifier = new Verifier(expected);
    verifier.update(bytes.subarray(1));
    const error = (() => {
      try {
        verifier.finish();
      } catch (e) {
        return e as SizeMismatchError;
      }
    })();
    expect(error).toBeInstanceOf(SizeMismatchError);
    expect(error!.exitCode).toBe(4);
    expect(error!.actual).toBe(bytes.length - 1);
  });

  test("refuses the right size with other bytes", () => {
    const verifier = new Verifier(expected);
    const other = bytes.slice();
    other[0]! ^= 1;
    verifier.update(other);
    const error = (() => {
      try {
        verifier.finish();
      } catch (e) {
        return e as DigestMismatchError;
      }
    })();
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error!.code).toBe("EINTEGRITY");
    expect(error!.expected).toBe(expected.digest);
    expect(error!.actual).toBe(digestOf(other));
  });
});

describe("verifyStream()", () => {
  test("passes verified bytes through unchanged", async () => {
    expect(new Uint8Array(await new Response(verifyStream(new Response(bytes).body!, expected)).arrayBuffer())).toEqual(
      bytes,
    );
  });

  test("errors instead of ending on a digest mismatch", async () => {
    const other = bytes.slice();
    other[5]! ^= 1;
    await expect(new Response(verifyStream(new Response(other).body!, expected)).arrayBuffer()).rejects.toBeInstanceOf(
      DigestMismatchError,
    );
  });
});

describe("hashFile()", () => {
  test("hashes a whole file and a range of it", () => {
    const dir = mkdtempSync(join(tmpdir(), "ocicache-digest-"));
    try {
      const path = join(dir, "blob");
      const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i % 251);
      writeFileSync(path, big);
      expect(hashFile(path)).toEqual({ digest: digestOf(big), size: big.length });
      expect(hashFile(path, 100, 2_000_000)).toEqual({
        digest: digestOf(big.subarray(100, 2_000_100)),
        size: 2_000_000,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("parseDigest() on random input", () => {
  test("parses to a value that round-trips, or throws a usage error; never anything else", () => {
    const alphabet = "sha256:SHA512abcdef0123456789./\\\0 \n%-_+";
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let parsed = 0;
    for (let i = 0; i < 5000; i++) {
      let input = random() < 0.3 ? "sha256:" : "";
      const length = random() < 0.3 ? 64 : Math.floor(random() * 80);
      const hexOnly = random() < 0.5;
      for (let j = 0; j < length; j++)
        input +=
          hexOnly || random() < 0.8
            ? "0123456789abcdef"[Math.floor(random() * 16)]
            : alphabet[Math.floor(random() * alphabet.length)];
      try {
        const digest = parseDigest(input);
        expect(parseDigest(digest)).toBe(digest);
        expect(digest).toMatch(/^sha256:[a-f0-9]{64}$/);
        parsed++;
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
      }
    }
    expect(parsed).toBeGreaterThan(0);
  });
});
