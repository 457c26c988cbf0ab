/**
 * Layers and layouts made to exhaust: a decompression bomb behind a small compressed layer (finding 10), and an
 * `oci:DIR` layout whose files are a huge manifest, a FIFO or links out of the layout (finding 12).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../lib/oci/digest.ts";
import { runCli } from "../helpers/cli.ts";
import { RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushBlob, pushManifest } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const tmp = useTempDir("hostile-layers");
let registry: RegistryHandle;

beforeAll(async () => {
  registry = await sharedRegistry();
});
afterAll(() => registry.stop());

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** Push an image of one layer (no annotation: the kernel is looked for at /unikraft/bin/kernel). */
async function pushLayer(repo: string, layer: Uint8Array, mediaType: string): Promise<string> {
  const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux" }));
  const configDigest = await pushBlob(registry.url, repo, config);
  const layerDigest = await pushBlob(registry.url, repo, layer);
  const manifest = {
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: [{ mediaType, digest: layerDigest, size: layer.length }],
  };
  await pushManifest(registry.url, repo, "1", MANIFEST, JSON.stringify(manifest));
  return `${registry.host}/${repo}:1`;
}

/** A compressed tar layer whose /unikraft/bin/kernel is `bytes` of zeros: made by GNU tar and gzip or zstd. */
function bomb(bytes: number, compress: "gzip" | "zstd"): Uint8Array {
  const root = join(tmp.path, "bomb", "unikraft", "bin");
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "kernel"), "");
  truncateSync(join(root, "kernel"), bytes);
  const out = join(tmp.path, "bomb.layer");
  execFileSync("bash", [
    "-c",
    `tar --format=posix -cf - -C "$1" unikraft | ${compress} -1 -c > "$2"`,
    "-",
    join(tmp.path, "bomb"),
    out,
  ]);
  return readFileSync(out);
}

describe("a decompression bomb (finding 10)", () => {
  test.each(["gzip", "zstd"] as const)(
    "a small %s layer whose kernel decompresses to 300 MiB is refused at 256 MiB, and nothing is kept",
    async (compress) => {
      const layer = bomb(300 * 1024 * 1024, compress);
      expect(layer.length).toBeLessThan(2 * 1024 * 1024);
      const ref = await pushLayer(
        `bomb-${run}/${compress}`,
        layer,
        `application/vnd.oci.image.layer.v1.tar+${compress}`,
      );
      const cache = join(tmp.path, "cache");
      const ran = await runCli(["path", ref, "--role", "kernel", "--platform", "linux/amd64", "--cache-dir", cache]);
      expect(ran.messages).toContain("decompress to more than 268435456");
      expect(ran.code).toBe(4);
      const blobs = join(cache, "blobs", "sha256");
      expect(readdirSync(blobs).every((name) => statSync(join(blobs, name)).size < 2 * 1024 * 1024)).toBe(true);
      expect(readdirSync(join(cache, "tmp")).filter((name) => name.startsWith("member"))).toEqual([]);
    },
    60_000,
  );
});

describe("an oci:DIR layout made to exhaust or to leak (finding 12)", () => {
  /** A layout of one image whose kernel layer is `kernel`; returns the paths of its manifest and kernel blob. */
  function layout(dir: string, kernel: Uint8Array) {
    mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
    const put = (bytes: Uint8Array) => {
      const digest = digestOf(bytes);
      writeFileSync(join(dir, "blobs", "sha256", digest.slice(7)), bytes);
      return { digest, size: bytes.byteLength, path: join(dir, "blobs", "sha256", digest.slice(7)) };
    };
    const config = put(new TextEncoder().encode("{}"));
    const layer = put(kernel);
    const manifest = put(
      new TextEncoder().encode(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MANIFEST,
          config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config.digest, size: config.size },
          layers: [{ mediaType: "application/vnd.unikraft.kernel.v1", digest: layer.digest, size: layer.size }],
        }),
      ),
    );
    const index = {
      schemaVersion: 2,
      manifests: [{ mediaType: MANIFEST, digest: manifest.digest, size: manifest.size, annotations: {} }],
    };
    writeFileSync(join(dir, "index.json"), JSON.stringify(index));
    writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    return { manifest: manifest.path, kernel: layer.path };
  }
  const kernel = new TextEncoder().encode("a unikernel of 32 bytes, exactly");

  test("a manifest that is a FIFO is refused at once, not waited on", async () => {
    const dir = join(tmp.path, "layout");
    const { manifest } = layout(dir, kernel);
    rmSync(manifest);
    execFileSync("mkfifo", [manifest]);
    const ran = await runCli(["pull", `oci:${dir}`, "-o", join(tmp.path, "out"), "--cache-dir", join(tmp.path, "c")]);
    expect(ran.messages).toContain("not a regular file");
    expect(ran.code).toBe(4);
  });

  test("a manifest that is a link to a huge file is refused unread", async () => {
    const dir = join(tmp.path, "layout");
    const { manifest } = layout(dir, kernel);
    const huge = join(tmp.path, "huge");
    writeFileSync(huge, "");
    truncateSync(huge, 1024 * 1024 * 1024);
    rmSync(manifest);
    symlinkSync(huge, manifest);
    const ran = await runCli(["pull", `oci:${dir}`, "-o", join(tmp.path, "out"), "--cache-dir", join(tmp.path, "c")]);
    expect(ran.messages).toContain("not a regular file");
    expect(ran.code).toBe(4);
  });

  test("a manifest over 4 MiB is refused unread", async () => {
    const dir = join(tmp.path, "layout");
    const { manifest } = layout(dir, kernel);
    truncateSync(manifest, 5 * 1024 * 1024);
    const ran = await runCli(["pull", `oci:${dir}`, "-o", join(tmp.path, "out"), "--cache-dir", join(tmp.path, "c")]);
    expect(ran.messages).toContain("it is larger than 4194304 bytes");
    expect(ran.code).toBe(4);
  });

  test("without --verify, a kernel blob that is a link to a file of the machine is not copied into -o", async () => {
    const dir = join(tmp.path, "layout");
    const secret = join(tmp.path, "machine-id");
    writeFileSync(secret, "0123456789abcdef0123456789abcdef");
    const blob = layout(dir, kernel).kernel;
    rmSync(blob);
    symlinkSync(secret, blob);
    const out = join(tmp.path, "out");
    const ran = await runCli(["pull", `oci:${dir}`, "-o", out, "--cache-dir", join(tmp.path, "c")]);
    expect(ran.messages).toContain("not a regular file");
    expect(ran.code).toBe(4);
    expect(lstatSync(join(out, "kernel"), { throwIfNoEntry: false })).toBeUndefined();
  });
});
