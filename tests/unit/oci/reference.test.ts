import { describe, expect, test } from "bun:test";
import { UsageError } from "../../../lib/errors.ts";
import { parseDigest } from "../../../lib/oci/digest.ts";
import { formatReference, parseLayoutSource, parseReference } from "../../../lib/oci/reference.ts";

const HEX = "a".repeat(64);

describe("parseReference()", () => {
  test("keeps host, port, repository and tag", () => {
    expect(parseReference("127.0.0.1:5000/unikraft/nginx:1.25")).toEqual({
      registry: "127.0.0.1:5000",
      repository: "unikraft/nginx",
      tag: "1.25",
    });
  });

  test("fills in Docker Hub's defaults and the latest tag", () => {
    expect(parseReference("alpine")).toEqual({ registry: "docker.io", repository: "library/alpine", tag: "latest" });
    expect(parseReference("unikraft/base")).toEqual({
      registry: "docker.io",
      repository: "unikraft/base",
      tag: "latest",
    });
    expect(parseReference("index.docker.io/library/alpine:3").registry).toBe("docker.io");
  });

  test("a digest without a tag pins the content and adds no tag", () => {
    expect(parseReference(`localhost:5000/app@sha256:${HEX}`)).toEqual({
      registry: "localhost:5000",
      repository: "app",
      digest: parseDigest(`sha256:${HEX}`),
    });
  });

  test("keeps both tag and digest when both are given", () => {
    const ref = parseReference(`unikraft.org/nginx:1.25@sha256:${HEX}`);
    expect(ref.tag).toBe("1.25");
    expect(ref.digest).toBe(parseDigest(`sha256:${HEX}`));
  });

  test.each([
    ["", "empty"],
    ["UPPER/case", "bad repository component"],
    ["host:5000/", "the repository is empty"],
    ["repo:bad tag", "spaces"],
    ["repo:-tag", "bad tag"],
    [`repo@sha256:${"A".repeat(64)}`, "bad digest"],
    ["repo@sha256:../../etc/passwd", "bad digest"],
    [`repo@sha512:${"a".repeat(128)}`, "bad digest"],
    ["../../etc/passwd", "bad registry host"],
    ["/etc/passwd", "bad repository component"],
    ["repo\0name", "control"],
    ["host:99999/repo", "bad port"],
    [`host.io/${"a".repeat(300)}`, "longer than 255"],
    ["a//b", "bad repository component"],
  ])("rejects %j as a usage error (%s)", (input, part) => {
    let caught: unknown;
    try {
      parseReference(input);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(UsageError);
    expect((caught as UsageError).code).toBe("EUSAGE");
    expect((caught as UsageError).exitCode).toBe(2);
    expect((caught as Error).message).toContain(part);
    expect((caught as Error).message).not.toContain("\n");
  });

  test("random strings either parse to a reference that round-trips or throw a usage error", () => {
    const alphabet = `abcxyz019:/@._-AZ \0%sha256:${HEX.slice(0, 8)}`;
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 5000; i++) {
      const length = Math.floor(random() * 40);
      let input = "";
      for (let j = 0; j < length; j++) input += alphabet[Math.floor(random() * alphabet.length)];
      if (random() < 0.2) input += `@sha256:${HEX}`;
      try {
        const ref = parseReference(input);
        expect(parseReference(formatReference(ref))).toEqual(ref);
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
      }
    }
  });
});

describe("parseLayoutSource()", () => {
  test("reads oci:DIR and oci:DIR:tag", () => {
    expect(parseLayoutSource("oci:./image")).toEqual({ dir: "./image" });
    expect(parseLayoutSource("oci:/tmp/image:1.25")).toEqual({ dir: "/tmp/image", tag: "1.25" });
    expect(parseLayoutSource("127.0.0.1:5000/app:1")).toBeUndefined();
  });

  test("rejects an empty directory", () => {
    expect(() => parseLayoutSource("oci:")).toThrow(UsageError);
  });
});
