import { describe, expect, test } from "bun:test";
import { IntegrityError } from "../../../lib/errors.ts";
import { findImageFiles } from "../../../lib/oci/files.ts";
import { MAX_DESCRIPTORS, type Manifest, parseManifest } from "../../../lib/oci/manifest.ts";

const d = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;
const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const image = (layers: unknown[], annotations?: Record<string, string>) => ({
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: d(1), size: 2 },
  layers,
  ...(annotations !== undefined && { annotations }),
});

function expectIntegrity(run: () => unknown, part: string): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(IntegrityError);
  expect((caught as IntegrityError).exitCode).toBe(4);
  expect((caught as Error).message).toContain(part);
}

describe("parseManifest()", () => {
  test("reads an OCI index and a Docker manifest list as indexes", () => {
    const entry = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: d(2),
      size: 10,
      platform: { os: "linux", architecture: "amd64" },
    };
    expect(
      parseManifest(
        encode({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [entry] }),
        "",
        "x",
      ).kind,
    ).toBe("index");
    expect(
      parseManifest(
        encode({ schemaVersion: 2, manifests: [entry] }),
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "x",
      ).kind,
    ).toBe("index");
  });

  test("refuses malformed JSON", () =>
    expectIntegrity(() => parseManifest(new TextEncoder().encode("{"), "", "x"), "not valid JSON"));

  test("refuses an unknown media type", () => {
    expectIntegrity(
      () => parseManifest(encode({ schemaVersion: 2, mediaType: "text/html", layers: [] }), "", "x"),
      'unsupported media type "text/html"',
    );
  });

  test.each([
    [{ mediaType: "a", digest: "sha256:../../etc/passwd", size: 1 }, "is not sha256"],
    [{ mediaType: "a", digest: d(3), size: -1 }, "bad size"],
    [{ mediaType: "a", digest: d(3), size: 2 ** 60 }, "bad size"],
    [{ mediaType: "a", digest: d(3), size: "12" }, "bad size"],
    [{ digest: d(3), size: 1 }, "no media type"],
  ])("refuses the descriptor %j", (layer, part) => {
    expectIntegrity(() => parseManifest(encode(image([layer])), "", "x"), part);
  });

  test("refuses a layer list longer than the limit", () => {
    const layers = Array.from({ length: MAX_DESCRIPTORS + 1 }, (_, i) => ({
      mediaType: "a",
      digest: d(i + 10),
      size: 1,
    }));
    expectIntegrity(() => parseManifest(encode(image(layers)), "", "x"), "more than the limit");
  });

  test("drops a urls field instead of following it", () => {
    const m = parseManifest(
      encode(
        image([
          {
            mediaType: "application/vnd.unikraft.kernel.v1",
            digest: d(4),
            size: 1,
            urls: ["http://elsewhere.example/blob"],
          },
        ]),
      ),
      "",
      "x",
    );
    expect(m.kind === "image" && "urls" in m.layers[0]!).toBe(false);
  });
});

describe("findImageFiles()", () => {
  const parse = (value: unknown) => parseManifest(encode(value), "", "x") as Manifest & { kind: "image" };

  test("finds kraftkit's standalone kernel, initrd, debug kernel and ROMs", () => {
    const m = parse(
      image([
        { mediaType: "application/vnd.unikraft.kernel.v1", digest: d(5), size: 1 },
        { mediaType: "application/vnd.unikraft.initrd.v1", digest: d(6), size: 1 },
        { mediaType: "application/vnd.unikraft.kernel.dbg.v1", digest: d(7), size: 1 },
        { mediaType: "application/vnd.unikraft.rom.v1", digest: d(8), size: 1 },
        { mediaType: "application/vnd.unikraft.rom.v1", digest: d(9), size: 1 },
      ]),
    );
    expect(findImageFiles(m).map((f) => [f.name, f.layer.digest])).toEqual([
      ["kernel", d(5)],
      ["initrd", d(6)],
      ["rom0", d(8)],
      ["rom1", d(9)],
    ]);
    expect(findImageFiles(m, true).map((f) => f.name)).toContain("kernel.dbg");
  });

  test("finds files in a tar layer through its annotations, without the leading slash", () => {
    const m = parse(
      image([
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar",
          digest: d(10),
          size: 1,
          annotations: {
            "org.unikraft.kernel.image": "/unikraft/bin/kernel",
            "org.unikraft.kernel.initrd": "./unikraft/bin/initrd",
          },
        },
      ]),
    );
    expect(findImageFiles(m).map((f) => [f.role, f.path])).toEqual([
      ["kernel", "unikraft/bin/kernel"],
      ["initrd", "unikraft/bin/initrd"],
    ]);
  });

  test("a path inside a compressed tar layer is taken out of the decompressed stream; a non-tar is refused", () => {
    const m = parse(
      image([
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar+zstd",
          digest: d(11),
          size: 1,
          annotations: { "org.unikraft.kernel.image": "/k" },
        },
      ]),
    );
    expect(findImageFiles(m)).toMatchObject([{ role: "kernel", path: "k", compression: "zstd" }]);
    const other = parse(
      image([
        {
          mediaType: "application/octet-stream",
          digest: d(12),
          size: 1,
          annotations: { "org.unikraft.kernel.image": "/k" },
        },
      ]),
    );
    expectIntegrity(() => findImageFiles(other), "is not a tar");
  });

  test("with no annotation naming a kernel or an initrd, the last tar layer is searched at the spec's paths", () => {
    const layers = [
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d(13), size: 1 },
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d(14), size: 1 },
    ];
    const found = findImageFiles(parse(image(layers)), true);
    expect(found.map((f) => [f.role, f.path, f.layer.digest, f.wellKnown, f.compression])).toEqual([
      ["kernel", "unikraft/bin/kernel", d(14), true, "gzip"],
      ["initrd", "unikraft/bin/initrd", d(14), true, "gzip"],
      ["kernel.dbg", "unikraft/bin/kernel.dbg", d(14), true, "gzip"],
    ]);
  });
});
