import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseDigest } from "../../../lib/oci/digest.ts";
import { parseReference } from "../../../lib/oci/reference.ts";
import { type DownloadOptions, downloadBlob } from "../../../lib/pull/download.ts";
import { RegistryClient } from "../../../lib/registry/client.ts";
import { Store } from "../../../lib/store/store.ts";
import { HOST_ARCH, RUN_ID, useTempDir } from "../../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../../helpers/registry.ts";

let registry: RegistryHandle;
let image: SampleImage;
beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `download-${RUN_ID}/app`, "1", {
    format: "kraftkit",
    kernelBytes: 100_000,
    initrdBytes: 1000,
  });
});
afterAll(() => registry.stop());
const tmp = useTempDir("download");

function options(store: Store, extra: Partial<DownloadOptions> = {}): DownloadOptions {
  const layer = image.manifests[HOST_ARCH].layers[0]!;
  return {
    store,
    client: new RegistryClient({ backoffMs: 5 }),
    ref: parseReference(image.ref),
    descriptor: { mediaType: layer.mediaType, digest: parseDigest(layer.digest), size: layer.size },
    writable: true,
    onCacheFailed: () => {
      throw new Error("the cache did not fail");
    },
    idleTimeoutMs: 5_000,
    lockTimeoutMs: 5_000,
    ...extra,
  };
}

describe("downloadBlob()", () => {
  test("commits a verified blob, leaves neither partial file nor lock, and a second call is a hit", async () => {
    const store = new Store(join(tmp.path, "cache"));
    store.init();
    const first = await downloadBlob(options(store));
    expect(first.cached).toBe(true);
    expect(first.hit).toBe(false);
    expect(readFileSync(first.path!)).toEqual(Buffer.from(image.manifests[HOST_ARCH].files.kernel));
    expect(readdirSync(store.tmpDir)).toEqual([]);
    expect((await downloadBlob(options(store))).hit).toBe(true);
  });

  test("with the cache unwritable, the verified bytes go to the fallback file only", async () => {
    const store = new Store(join(tmp.path, "cache"));
    store.init();
    let told = 0;
    const fallbackPath = join(tmp.path, "kernel");
    const result = await downloadBlob(
      options(store, { writable: false, fallbackPath, onCacheFailed: () => void told++ }),
    );
    expect(result).toEqual({ path: fallbackPath, hit: false, cached: false });
    expect(readFileSync(fallbackPath)).toEqual(Buffer.from(image.manifests[HOST_ARCH].files.kernel));
    expect(told).toBe(1);
    expect(existsSync(store.blobPath(options(store).descriptor.digest))).toBe(false);
  });
});
