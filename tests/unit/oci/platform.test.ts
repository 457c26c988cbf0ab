import { describe, expect, test } from "bun:test";
import { NotFoundError, UsageError } from "../../../lib/errors.ts";
import type { Descriptor } from "../../../lib/oci/manifest.ts";
import { hostArchitecture, parsePlatform, selectManifest } from "../../../lib/oci/platform.ts";

const entry = (n: number, platform: Descriptor["platform"], plat?: string): Descriptor => ({
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  digest: `sha256:${String(n).padStart(64, "0")}` as Descriptor["digest"],
  size: 1,
  platform,
  ...(plat !== undefined && { annotations: { "org.unikraft.kernel.plat": plat } }),
});

const index = [
  entry(1, { os: "qemu", architecture: "x86_64" }),
  entry(2, { os: "qemu", architecture: "arm64" }),
  entry(3, { os: "linux", architecture: "amd64" }, "fc"),
];

describe("parsePlatform()", () => {
  test("reads os/arch/variant and normalises unikraft's architecture names", () => {
    expect(parsePlatform("linux/x86_64")).toEqual({ os: "linux", architecture: "amd64" });
    expect(parsePlatform("linux/arm/v7")).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
    expect(parsePlatform("aarch64", "QEMU")).toEqual({ architecture: "arm64", plat: "qemu" });
  });

  test.each(["linux/", "a/b/c/d", "../x", "linux/amd64 "])("rejects %j", (input) => {
    expect(() => parsePlatform(input)).toThrow(UsageError);
  });
});

describe("selectManifest()", () => {
  test("x86_64 and amd64 name one architecture", () => {
    expect(selectManifest(index, parsePlatform("amd64"), "r").digest).toBe(index[0]!.digest);
    expect(selectManifest(index, parsePlatform("qemu/arm64"), "r").digest).toBe(index[1]!.digest);
  });

  test("chooses by unikraft platform annotation", () => {
    expect(selectManifest(index, parsePlatform("x86_64", "fc"), "r").digest).toBe(index[2]!.digest);
  });

  test("defaults to the host's architecture", () => {
    expect(hostArchitecture()).toBe(process.arch === "x64" ? "amd64" : process.arch);
    expect(selectManifest(index, {}, "r").platform?.architecture).toMatch(
      hostArchitecture() === "amd64" ? /x86_64|amd64/ : /arm64/,
    );
  });

  test("lists what the index offers when nothing matches", () => {
    let caught: unknown;
    try {
      selectManifest(index, parsePlatform("linux/riscv64"), "127.0.0.1:5000/app:1");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(NotFoundError);
    expect((caught as NotFoundError).exitCode).toBe(3);
    expect((caught as Error).message).toContain("qemu/amd64, qemu/arm64, linux/amd64 (fc)");
  });
});

describe("what was asked for, in the not-found error", () => {
  test.each([
    [parsePlatform("linux/riscv64"), 'Cannot find platform "linux/riscv64" in'],
    [parsePlatform(undefined, "xen"), `Cannot find plat "xen" for ${hostArchitecture()} in`],
    [parsePlatform("linux/riscv64", "fc"), 'Cannot find platform "linux/riscv64" with plat "fc" in'],
  ])("%j is named as the user wrote it", (want, said) => {
    expect(() => selectManifest(index, want, "127.0.0.1:5000/app:1")).toThrow(said);
  });
});
