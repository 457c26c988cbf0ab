/**
 * Each byte stored once: a file taken out of a tar layer is derived data. A cold `pull -o` writes it straight from
 * the layer into the output and keeps no second copy in the cache; `path`, which needs a file of its own, derives
 * it once; cleanup takes derived files before any layer, and a pull still works from the layers alone.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../lib/oci/digest.ts";
import { runCli } from "../helpers/cli.ts";
import { CAN_MOUNT, HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { mountXfs } from "../helpers/mount.ts";
import { sharedRegistry } from "../helpers/registry.ts";

const tmp = useTempDir("derived");
let spec: SampleImage;
/** The blobs the image's manifests name for this machine: the index, its manifest, the config, the layers. */
let imageBlobs: Map<string, number>;

beforeAll(async () => {
  const registry = await sharedRegistry();
  spec = await pushSampleImage(registry.url, `derived-${run}/nginx`, "1.25", {
    format: "spec",
    kernelBytes: 512 * 1024,
    initrdBytes: 4 * 1024 * 1024,
    romBytes: [4096],
  });
  const repo = spec.name.slice(spec.name.indexOf("/") + 1);
  const get = async (digest: string, accept: string) =>
    (await fetch(`${registry.url}/v2/${repo}/manifests/${digest}`, { headers: { Accept: accept } })).text();
  const index = await get(spec.indexDigest, "application/vnd.oci.image.index.v1+json");
  const manifestText = await get(spec.manifests[host].digest, "application/vnd.oci.image.manifest.v1+json");
  const manifest = JSON.parse(manifestText) as { config: { digest: string; size: number }; layers: typeof blobs };
  const blobs = [manifest.config, ...manifest.layers] as Array<{ digest: string; size: number }>;
  imageBlobs = new Map([
    [spec.indexDigest, Buffer.byteLength(index)],
    [spec.manifests[host].digest, Buffer.byteLength(manifestText)],
    ...blobs.map((b) => [b.digest, b.size] as [string, number]),
  ]);
});

const cache = () => join(tmp.path, "cache");
const ocicache = (args: string[]) => runCli(args, { OCICACHE_DIR: cache() });
/** What `blobs/sha256/` holds: digest → bytes. */
const cached = () =>
  new Map(
    readdirSync(join(cache(), "blobs", "sha256")).map((hex) => [
      `sha256:${hex}`,
      statSync(join(cache(), "blobs", "sha256", hex)).size,
    ]),
  );
const files = () => spec.manifests[host].files;
const stats = async () => JSON.parse((await ocicache(["stats", "--json"])).stdout) as Record<string, number>;

describe("files taken out of a tar layer are derived data", () => {
  test("a cold pull -o keeps the image's blobs and nothing more: at most 1.02 × their bytes", async () => {
    const pulled = await ocicache(["pull", spec.ref, "-o", join(tmp.path, "out"), "-q"]);
    expect([pulled.code, pulled.stderr]).toEqual([0, ""]);
    expect(readFileSync(join(tmp.path, "out", "kernel"))).toEqual(Buffer.from(files().kernel));
    expect(readFileSync(join(tmp.path, "out", "initrd"))).toEqual(Buffer.from(files().initrd));
    const held = cached();
    expect([...held.keys()].filter((digest) => !imageBlobs.has(digest))).toEqual([]);
    const imageBytes = [...imageBlobs.values()].reduce((a, b) => a + b, 0);
    const heldBytes = [...held.values()].reduce((a, b) => a + b, 0);
    expect(heldBytes).toBeLessThanOrEqual(1.02 * imageBytes);
    expect((await stats()).derivedBytes).toBe(0);
    // Again, into outputs that hold the right content: left alone (same inode, same mtime).
    const before = statSync(join(tmp.path, "out", "initrd"));
    expect((await ocicache(["pull", spec.ref, "-o", join(tmp.path, "out"), "-q"])).code).toBe(0);
    const after = statSync(join(tmp.path, "out", "initrd"));
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  });

  test("path --role initrd derives the file once, recorded as derived; a second path is a hit", async () => {
    expect((await ocicache(["pull", spec.ref, "-o", join(tmp.path, "out"), "-q"])).code).toBe(0);
    const first = await ocicache(["path", spec.ref, "--role", "initrd", "--offline"]);
    expect(first.code).toBe(0);
    const blob = first.stdout.trim();
    expect(readFileSync(blob)).toEqual(Buffer.from(files().initrd));
    expect((await stats()).derivedBytes).toBe(files().initrd.length);
    const written = statSync(blob).mtimeMs;
    const second = await ocicache(["path", spec.ref, "--role", "initrd", "--offline", "-q"]);
    expect([second.code, second.stdout.trim(), second.stderr]).toEqual([0, blob, ""]);
    expect(statSync(blob).mtimeMs).toBe(written);
    const rows = JSON.parse((await ocicache(["ls", "--json"])).stdout) as Array<{ derivedBytes: number }>;
    expect(rows[0]!.derivedBytes).toBe(files().initrd.length);
    const table = (await ocicache(["ls"])).stdout.split("\n");
    expect(table[0]).toMatch(/^REFERENCE\s+DIGEST\s+PLATFORMS\s+SIZE\s+DERIVED\s+LAST USE$/);
    expect(table[1]).toContain("  4.0 MiB  ");
  });

  test("gc --max-size just above the layers' bytes removes derived files first, keeps every layer", async () => {
    expect((await ocicache(["pull", spec.ref, "-q"])).code).toBe(0);
    const before = await stats();
    expect(before.derivedBytes).toBe(files().kernel.length + files().initrd.length);
    const limit = before.bytes - before.derivedBytes + 1;
    const gc = await ocicache(["gc", "--max-size", String(limit), "--grace", "0", "--json"]);
    expect(gc.code).toBe(0);
    const removed = JSON.parse(gc.stdout).removed as Array<{ kind: string; bytes: number }>;
    expect(removed.map((r) => r.kind)).toEqual(["derived", "derived"]);
    const held = cached();
    for (const digest of imageBlobs.keys()) expect([digest, held.has(digest)]).toEqual([digest, true]);
    expect((await stats()).derivedBytes).toBe(0);
    // The layers are all a pull needs: offline, the files are taken out of them again.
    const out = join(tmp.path, "again");
    const pulled = await ocicache(["pull", spec.ref, "-o", out, "--offline", "-q"]);
    expect([pulled.code, pulled.stderr]).toEqual([0, ""]);
    expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(files().kernel));
    expect(readFileSync(join(out, "initrd"))).toEqual(Buffer.from(files().initrd));
    const verify = await ocicache(["verify", "--json"]);
    expect([verify.code, JSON.parse(verify.stdout).missing]).toEqual([0, []]);
  });
});

describe("on a file system that clones (XFS with reflink)", () => {
  test.skipIf(!CAN_MOUNT)("a file at a block-aligned offset of its layer is cloned into its output", async () => {
    const xfs = mountXfs();
    try {
      // A layout on XFS whose tar puts the kernel's bytes at 4096: a 3072-byte file first, then its header.
      const layout = join(xfs.dir, "layout");
      const kernel = new Uint8Array(64 * 1024 + 100).map((_, i) => (i * 7) % 251);
      mkdirSync(join(layout, "src", "unikraft", "bin"), { recursive: true });
      writeFileSync(join(layout, "src", "pad"), new Uint8Array(3072));
      writeFileSync(join(layout, "src", "unikraft", "bin", "kernel"), kernel);
      const tar = join(layout, "layer.tar");
      const made = Bun.spawnSync(["tar", "-cf", tar, "-C", join(layout, "src"), "pad", "unikraft/bin/kernel"]);
      expect(made.exitCode).toBe(0);
      const put = (bytes: Uint8Array) => {
        const digest = digestOf(bytes);
        mkdirSync(join(layout, "blobs", "sha256"), { recursive: true });
        writeFileSync(join(layout, "blobs", "sha256", digest.slice(7)), bytes);
        return { digest, size: bytes.length };
      };
      const layer = { mediaType: "application/vnd.oci.image.layer.v1.tar", ...put(readFileSync(tar)) };
      const config = { mediaType: "application/vnd.oci.image.config.v1+json", ...put(new TextEncoder().encode("{}")) };
      const mediaType = "application/vnd.oci.image.manifest.v1+json";
      const manifest = put(
        new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType, config, layers: [layer] })),
      );
      const annotations = { "org.opencontainers.image.ref.name": "1" };
      writeFileSync(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
      writeFileSync(
        join(layout, "index.json"),
        JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType, ...manifest, annotations }] }),
      );
      const out = join(xfs.dir, "out");
      const pulled = await ocicache(["pull", `oci:${layout}:1`, "-o", out, "--json"]);
      expect(pulled.code).toBe(0);
      const result = JSON.parse(pulled.stdout) as { files: Array<{ name: string; cloned?: boolean }> };
      expect(result.files.map((f) => [f.name, f.cloned])).toEqual([["kernel", true]]);
      expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(kernel));
      // The output's blocks are the layer's: XFS marks them shared (FIEMAP_EXTENT_SHARED).
      const map = Bun.spawnSync(["xfs_io", "-c", "fiemap -v", join(out, "kernel")]).stdout.toString();
      expect(map).toMatch(/0x2\d{3}/);
    } finally {
      xfs.unmount();
    }
  });
});
