/**
 * Files inside a compressed tar layer (a unikraft image recompressed on its
 * way through common tools or a mirror): the layer, cached and verified, is
 * decompressed as a stream once, and each file asked for is written into the
 * cache as a blob of its own, hashed on the way. Neither the layer nor a file
 * is ever whole in memory.
 *
 * @module
 */

import { IntegrityError, StoreError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import type { ImageFile } from "../oci/files.ts";
import { decompressedStream } from "../oci/read.ts";
import { extractTarMembers } from "../oci/tar.ts";
import type { DerivedFile } from "../store/index-file.ts";
import { type Ingest, ingestUnnamed } from "../store/ingest.ts";
import type { Store } from "../store/store.ts";
import type { BlobResult, Cache } from "./cache.ts";
import type { ImageSource } from "./source.ts";

/**
 * Take `paths` out of the compressed tar layer at `layerPath` into `store`, in one pass. A path the layer does
 * not hold is left out of the result.
 *
 * @throws {IntegrityError} when the layer does not decompress, or is not a valid tar.
 * @throws {StoreError} when a file cannot be written into the cache.
 * @example Keep the kernel of a gzip layer as a blob of its own
 * ```ts
 * import assert from "node:assert";
 * import { mkdirSync, writeFileSync } from "node:fs";
 * import { digestOf } from "../oci/digest.ts";
 * import { takeOutOfCompressed } from "./members.ts";
 * import { Store } from "../store/store.ts";
 * mkdirSync("unikraft/bin", { recursive: true });
 * writeFileSync("unikraft/bin/kernel", "a unikernel");
 * Bun.spawnSync(["tar", "-czf", "layer.tar.gz", "unikraft"]);
 * const store = new Store("/tmp/ocicache-example");
 * store.init();
 * const found = await takeOutOfCompressed(store, "layer.tar.gz", "gzip", ["unikraft/bin/kernel"], "layer");
 * assert.deepEqual(found.get("unikraft/bin/kernel"), { digest: digestOf("a unikernel"), size: 11 });
 * ```
 */
export async function takeOutOfCompressed(
  store: Store,
  layerPath: string,
  compression: "gzip" | "zstd",
  paths: string[],
  what: string,
): Promise<Map<string, DerivedFile>> {
  const writers = new Map<string, Ingest>();
  try {
    const stream = decompressedStream(layerPath, compression);
    await extractTarMembers(
      stream,
      new Set(paths),
      (name, size) => {
        writers.get(name)?.abort();
        const writer = ingestUnnamed(store, { size, what: `"${name}" of layer "${what}"` });
        writers.set(name, writer);
        return writer;
      },
      what,
    );
  } catch (error) {
    for (const writer of writers.values()) writer.abort();
    if (error instanceof IntegrityError || error instanceof StoreError) throw error;
    throw new IntegrityError(`Cannot decompress layer "${what}" (${compression}): ${(error as Error).message}`, {
      cause: error,
    });
  }
  const found = new Map<string, DerivedFile>();
  for (const [name, writer] of writers) {
    const result = writer.commit();
    if (result.status !== "committed") {
      writer.abort();
      for (const other of writers.values()) if (other !== writer) other.abort();
      const reason = result.status === "failed" ? result.error.message : result.reason;
      throw new StoreError(`Cannot keep "${name}" of layer "${what}" in the cache: ${reason}`);
    }
    found.set(name, { digest: result.digest, size: result.size });
  }
  return found;
}

/**
 * The files of compressed tar layers that must be taken out (none recorded whose blob is cached, or `--verify`):
 * one streaming pass per layer. `null` for a file the layer does not hold.
 */
export async function takeOutCompressedFiles(
  cache: Cache | undefined,
  source: ImageSource,
  files: ImageFile[],
  layers: Map<Digest, BlobResult>,
  recorded: Record<string, DerivedFile>,
): Promise<Map<string, DerivedFile | null>> {
  const taken = new Map<string, DerivedFile | null>();
  const byLayer = new Map<Digest, ImageFile[]>();
  for (const file of files) {
    if (file.compression === undefined) continue;
    const known = recorded[`${file.layer.digest}:${file.path}`];
    const usable = !source.verify && known !== undefined && cache?.store.stat(known.digest)?.size === known.size;
    if (!usable) byLayer.set(file.layer.digest, [...(byLayer.get(file.layer.digest) ?? []), file]);
  }
  for (const [digest, wanted] of byLayer) {
    if (cache === undefined || !cache.writable)
      throw new StoreError(
        `Cannot take ${wanted.map((f) => `"/${f.path}"`).join(", ")} out of the compressed layer "${digest}" of ` +
          `"${source.name}": that needs a cache that can be written`,
      );
    const layerPath = layers.get(digest)!.path;
    if (layerPath === undefined) throw new StoreError(`Cannot keep layer "${digest}": the cache cannot be written`);
    const found = await takeOutOfCompressed(
      cache.store,
      layerPath,
      wanted[0]!.compression!,
      wanted.map((f) => f.path!),
      digest,
    );
    for (const file of wanted) taken.set(`${digest}:${file.path}`, found.get(file.path!) ?? null);
  }
  return taken;
}
