import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DigestMismatchError, NotFoundError, RegistryError } from "../../../lib/errors.ts";
import { type Digest, digestHex, digestOf } from "../../../lib/oci/digest.ts";
import { parsePlatform } from "../../../lib/oci/platform.ts";
import { parseReference } from "../../../lib/oci/reference.ts";
import { Cache, type CacheOptions } from "../../../lib/pull/cache.ts";
import { pullBlob, pullImage } from "../../../lib/pull/pull.ts";
import { readIndex } from "../../../lib/store/index-file.ts";
import { CAN_MOUNT, HOST_ARCH as host, RUN_ID as run } from "../../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../../helpers/images.ts";
import { mountTmpfs } from "../../helpers/mount.ts";
import { corrupt, type ProxyHandle, type ProxyHook, startProxy } from "../../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry } from "../../helpers/registry.ts";

let registry: RegistryHandle;
let spec: SampleImage;
let kraftkit: SampleImage;

beforeAll(async () => {
  registry = await sharedRegistry();
  spec = await pushSampleImage(registry.url, `pull-${run}/spec`, "1.25", {
    format: "spec",
    kernelBytes: 300_000,
    initrdBytes: 1_200_000,
    romBytes: [5000, 7000],
  });
  kraftkit = await pushSampleImage(registry.url, `pull-${run}/kraftkit`, "0.9", {
    format: "kraftkit",
    kernelBytes: 200_000,
    initrdBytes: 900_000,
    debugKernelBytes: 50_000,
  });
});
afterAll(() => registry.stop());

let dir: string;
let proxy: ProxyHandle | undefined;
let warnings: string[];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-pull-"));
  warnings = [];
});
afterEach(async () => {
  await proxy?.stop();
  proxy = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function through(hook?: ProxyHook): ProxyHandle {
  proxy = startProxy(registry.url, hook);
  return proxy;
}

function cache(options: Partial<CacheOptions> = {}): Cache {
  return new Cache({
    dir: join(dir, "cache"),
    onWarning: (w) => warnings.push(w),
    registry: { backoffMs: 10 },
    ...options,
  });
}

/** The image's reference with the proxy's host in place of the registry's. */
function via(p: ProxyHandle, image: SampleImage, suffix = ":1.25"): string {
  return `${image.name.replace(registry.host, p.host)}${suffix}`;
}

function blobFiles(): string[] {
  const blobs = join(dir, "cache", "blobs", "sha256");
  return existsSync(blobs) ? readdirSync(blobs) : [];
}

describe("pullImage()", () => {
  test("a miss then a hit: the second pull asks for no blob and writes the same bytes", async () => {
    const p = through();
    const ref = parseReference(via(p, spec));
    const first = await pullImage(cache(), ref, { outDir: join(dir, "one") });
    expect(first.hit).toBe(false);
    expect(first.files.map((f) => f.name)).toEqual(["kernel", "initrd", "rom0", "rom1"]);
    // The tar layer, two ROM layers and the config blob, once each.
    const blobGets = p.count("/blobs/", "GET");
    expect(blobGets).toBe(4);

    const second = await pullImage(cache(), ref, { outDir: join(dir, "two") });
    expect(second.hit).toBe(true);
    expect(second.files.filter((f) => !f.hit).map((f) => f.name)).toEqual([]);
    expect(p.count("/blobs/", "GET")).toBe(blobGets);
    expect(p.count("/manifests/1.25", "HEAD")).toBe(1);
    expect(p.count("/manifests/1.25", "GET")).toBe(1);

    const files = spec.manifests[host].files;
    for (const out of ["one", "two"]) {
      expect(readFileSync(join(dir, out, "kernel"))).toEqual(Buffer.from(files.kernel));
      expect(readFileSync(join(dir, out, "initrd"))).toEqual(Buffer.from(files.initrd));
      expect(readFileSync(join(dir, out, "rom1"))).toEqual(Buffer.from(files.roms[1]!));
    }
    expect(warnings).toEqual([]);
  });

  test("both image formats and both platforms give the pushed files", async () => {
    for (const [image, tag] of [
      [spec, "1.25"],
      [kraftkit, "0.9"],
    ] as const) {
      for (const arch of ["amd64", "arm64"] as const) {
        const out = join(dir, `${tag}-${arch}`);
        const result = await pullImage(cache(), parseReference(`${image.name}:${tag}`), {
          outDir: out,
          platform: parsePlatform(arch),
          debugKernel: true,
        });
        expect(result.manifest as string).toBe(image.manifests[arch].digest);
        const files = image.manifests[arch].files;
        expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(files.kernel));
        expect(readFileSync(join(out, "initrd"))).toEqual(Buffer.from(files.initrd));
        if (files["kernel.dbg"] !== undefined)
          expect(readFileSync(join(out, "kernel.dbg"))).toEqual(Buffer.from(files["kernel.dbg"]));
      }
    }
  });

  test("a file taken out of a tar layer is kept as a blob of its own and found again", async () => {
    const c = cache();
    const first = await pullImage(c, parseReference(`${spec.name}:1.25`), { roles: ["initrd"] });
    const initrd = first.files[0]!;
    expect(initrd.path).toBe(c.store.blobPath(initrd.digest));
    expect(initrd.digest).toBe(digestOf(spec.manifests[host].files.initrd));
    expect(statSync(initrd.path).mode & 0o222).toBe(0);
    const entry = readIndex(join(dir, "cache"))[0]!;
    expect(entry.annotations["org.opencontainers.image.ref.name"]).toBe(`${spec.name}:1.25`);
    expect(entry.annotations["io.ocicache.derived"]).toContain(initrd.digest);
    const again = await pullImage(cache(), parseReference(`${spec.name}:1.25`), { roles: ["initrd"] });
    expect(again.files[0]).toEqual({ ...initrd, hit: true });
  });

  test("outputs are the caller's own files: writing one does not change the cache", async () => {
    const c = cache();
    const result = await pullImage(c, parseReference(`${kraftkit.name}:0.9`), { outDir: join(dir, "out") });
    const kernel = result.files[0]!;
    writeFileSync(kernel.path, "overwritten");
    expect(readFileSync(c.store.blobPath(kernel.digest))).toEqual(Buffer.from(kraftkit.manifests[host].files.kernel));
  });

  test("--link hardlinks the read-only cache file", async () => {
    const c = cache();
    const result = await pullImage(c, parseReference(`${kraftkit.name}:0.9`), { outDir: join(dir, "out"), link: true });
    const kernel = result.files[0]!;
    expect(statSync(kernel.path).ino).toBe(statSync(c.store.blobPath(kernel.digest)).ino);
    expect(statSync(kernel.path).mode & 0o777).toBe(0o444);
  });

  test("with the registry gone, a pinned pull is served from the cache, a tag uses its last digest", async () => {
    const p = through();
    const first = await pullImage(cache(), parseReference(via(p, spec)), { outDir: join(dir, "one") });
    await p.stop();
    const pinned = await pullImage(cache(), parseReference(via(p, spec, `@${first.digest}`)), {
      outDir: join(dir, "two"),
    });
    expect(pinned.hit).toBe(true);
    expect(readFileSync(join(dir, "two", "initrd"))).toEqual(Buffer.from(spec.manifests[host].files.initrd));
    expect(warnings).toEqual([]);

    const tagged = await pullImage(cache(), parseReference(via(p, spec)), { outDir: join(dir, "three") });
    expect(tagged.digest).toBe(first.digest);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("using the last known digest");
  });

  test("--offline never contacts the registry and fails clearly for what is not cached", async () => {
    const p = through();
    await pullImage(cache(), parseReference(via(p, spec)));
    const before = p.requests.length;
    const result = await pullImage(cache({ offline: true }), parseReference(via(p, spec)));
    expect(result.hit).toBe(true);
    expect(p.requests.length).toBe(before);
    await expect(pullImage(cache({ offline: true }), parseReference(via(p, kraftkit, ":0.9")))).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  test("--fresh-for skips the tag's HEAD; --refresh asks again", async () => {
    const p = through();
    const ref = parseReference(via(p, spec));
    await pullImage(cache(), ref);
    await pullImage(cache({ freshForMs: 60_000 }), ref);
    expect(p.count("/manifests/1.25", "HEAD")).toBe(0);
    await pullImage(cache({ freshForMs: 60_000, refresh: true }), ref);
    expect(p.count("/manifests/1.25", "GET")).toBe(2);
  });

  test("a warm pull of an unchanged tag rewrites nothing; with --fresh-for it records the check", async () => {
    const ref = parseReference(`${spec.name}:1.25`);
    await pullImage(cache(), ref);
    const index = join(dir, "cache", "index.json");
    const before = readFileSync(index, "utf8");
    const inode = statSync(index).ino;
    await pullImage(cache(), ref);
    expect(statSync(index).ino).toBe(inode);
    await Bun.sleep(5);
    await pullImage(cache({ freshForMs: 1 }), ref);
    const checked = (text: string) => Date.parse(JSON.parse(text).manifests[0].annotations["io.ocicache.checked"]);
    expect(checked(readFileSync(index, "utf8"))).toBeGreaterThan(checked(before));
  });

  test("a tag moved upstream is followed on the next pull", async () => {
    const moving = await pushSampleImage(registry.url, `pull-${run}/moving`, "edge", { format: "kraftkit" });
    const ref = parseReference(`${moving.name}:edge`);
    const first = await pullImage(cache(), ref, { outDir: join(dir, "one") });
    const moved = await pushSampleImage(registry.url, `pull-${run}/moving`, "edge", { format: "kraftkit" });
    const second = await pullImage(cache(), ref, { outDir: join(dir, "two") });
    expect(first.digest as string).toBe(moving.indexDigest);
    expect(second.digest as string).toBe(moved.indexDigest);
    expect(readFileSync(join(dir, "two", "kernel"))).toEqual(Buffer.from(moved.manifests[host].files.kernel));
    expect(readIndex(join(dir, "cache")).map((e) => e.digest as string)).toEqual([moved.indexDigest]);
  });

  test("a registry that serves wrong bytes fails the pull and leaves blobs/ without that digest", async () => {
    const p = through(async (request, forward) => {
      const response = await forward();
      return request.method === "GET" && request.url.includes("/blobs/") ? corrupt(response, 1000) : response;
    });
    let caught: unknown;
    try {
      await pullImage(cache(), parseReference(via(p, kraftkit, ":0.9")), { outDir: join(dir, "out") });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DigestMismatchError);
    expect((caught as DigestMismatchError).exitCode).toBe(4);
    const layers = kraftkit.manifests[host].layers.map((l) => digestHex(l.digest as Digest));
    expect(blobFiles().filter((f) => layers.includes(f))).toEqual([]);
    expect(readdirSync(join(dir, "cache", "tmp")).filter((f) => f.endsWith(".part"))).toEqual([]);
    expect(existsSync(join(dir, "out", "kernel"))).toBe(false);
  });

  test("a cached blob truncated on disk is dropped and fetched again", async () => {
    const p = through();
    const ref = parseReference(via(p, kraftkit, ":0.9"));
    const first = await pullImage(cache(), ref, { roles: ["kernel"] });
    const path = first.files[0]!.path;
    chmodSync(path, 0o644);
    truncateSync(path, 1000);
    const gets = p.count("/blobs/", "GET");
    const second = await pullImage(cache(), ref, { outDir: join(dir, "out"), roles: ["kernel"] });
    expect(second.files[0]!.hit).toBe(false);
    expect(p.count("/blobs/", "GET")).toBe(gets + 1);
    expect(readFileSync(path)).toEqual(Buffer.from(kraftkit.manifests[host].files.kernel));
    expect(warnings.some((w) => w.includes("has 1000 bytes"))).toBe(true);
  });

  test("--verify finds a flipped byte in a cached blob and fetches it again", async () => {
    const ref = parseReference(`${kraftkit.name}:0.9`);
    const first = await pullImage(cache(), ref, { roles: ["kernel"] });
    const path = first.files[0]!.path;
    const bytes = readFileSync(path);
    bytes[10]! ^= 1;
    chmodSync(path, 0o644);
    writeFileSync(path, bytes);
    await pullImage(cache({ verify: true }), ref, { outDir: join(dir, "out"), roles: ["kernel"] });
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(kraftkit.manifests[host].files.kernel));
    expect(readFileSync(path)).toEqual(Buffer.from(kraftkit.manifests[host].files.kernel));
  });

  test.skipIf(!CAN_MOUNT)(
    "a read-only cache still delivers the files, with one warning (mounts a tmpfs: root only)",
    async () => {
      const fs = mountTmpfs(1024 * 1024);
      try {
        fs.readOnly();
        const c = new Cache({ dir: join(fs.dir, "cache"), onWarning: (w) => warnings.push(w) });
        const result = await pullImage(c, parseReference(`${spec.name}:1.25`), { outDir: join(dir, "out") });
        expect(result.files.filter((f) => f.hit).map((f) => f.name)).toEqual([]);
        expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(spec.manifests[host].files.kernel));
        expect(readFileSync(join(dir, "out", "initrd"))).toEqual(Buffer.from(spec.manifests[host].files.initrd));
        expect(readdirSync(join(dir, "out")).sort()).toEqual(["initrd", "kernel", "rom0", "rom1"]);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain("read-only file system");
      } finally {
        fs.unmount();
      }
    },
  );

  test.skipIf(!CAN_MOUNT)(
    "a cache that fills up mid-download still delivers the bytes and keeps no partial file (mounts a tmpfs: root only)",
    async () => {
      const fs = mountTmpfs(400 * 1024);
      try {
        const c = new Cache({ dir: join(fs.dir, "cache"), onWarning: (w) => warnings.push(w) });
        await pullImage(c, parseReference(`${kraftkit.name}:0.9`), { outDir: join(dir, "out") });
        expect(readFileSync(join(dir, "out", "initrd"))).toEqual(Buffer.from(kraftkit.manifests[host].files.initrd));
        expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(kraftkit.manifests[host].files.kernel));
        expect(warnings.filter((w) => w.includes("no space left on device"))).toHaveLength(1);
        expect(readdirSync(join(fs.dir, "cache", "tmp")).filter((f) => f.endsWith(".part"))).toEqual([]);
        expect(readdirSync(join(dir, "out")).sort()).toEqual(["initrd", "kernel"]);
      } finally {
        fs.unmount();
      }
    },
  );

  test("an unknown tag is not found; an unknown platform lists what there is", async () => {
    await expect(pullImage(cache(), parseReference(`${spec.name}:no-such-tag`))).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      pullImage(cache(), parseReference(`${spec.name}:1.25`), { platform: parsePlatform("linux/riscv64") }),
    ).rejects.toThrow(/offers linux\/amd64 \(qemu\), linux\/arm64 \(qemu\)/);
  });

  test("an unreachable registry is a registry error when nothing is cached", async () => {
    const p = through();
    await p.stop();
    await expect(pullImage(cache(), parseReference(via(p, spec)))).rejects.toBeInstanceOf(RegistryError);
  });
});

describe("pullBlob()", () => {
  test("fetches one blob by digest, verified, and serves it from the cache after", async () => {
    const p = through();
    const layer = kraftkit.manifests[host].layers[1]!;
    const ref = parseReference(via(p, kraftkit, `@${layer.digest}`)) as ReturnType<typeof parseReference> & {
      digest: Digest;
    };
    const chunks: Uint8Array[] = [];
    const first = await pullBlob(cache(), ref, { onChunk: (c) => void chunks.push(c.slice()) });
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(kraftkit.manifests[host].files.initrd));
    expect(first.cached).toBe(true);
    await p.stop();
    const second = await pullBlob(cache(), ref);
    expect(second.hit).toBe(true);
    expect(readFileSync(second.path!)).toEqual(Buffer.from(kraftkit.manifests[host].files.initrd));
  });
});

describe("Cache.warn() in a long-lived server", () => {
  test("says each warning once, and remembers at most 1024 of them: past that the memory starts over", () => {
    const said: string[] = [];
    const cache = new Cache({
      dir: join(tmpdir(), `ocicache-warn-${run}`),
      offline: true,
      onWarning: (m) => said.push(m),
    });
    cache.warn("first");
    cache.warn("first");
    expect(said).toEqual(["first"]);
    for (let i = 0; i < 1023; i++) cache.warn(`other ${i}`);
    cache.warn("first");
    expect(said.length).toBe(1024);
    cache.warn("one more");
    cache.warn("first");
    expect(said.slice(-2)).toEqual(["one more", "first"]);
  });
});
