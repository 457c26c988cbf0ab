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
import { describeFsError, type WriteResult } from "../store/files.ts";
import type { DerivedFile } from "../store/index-file.ts";
import { ingestUnnamed } from "../store/ingest.ts";
import { OutputFile } from "../store/output.ts";
import { holdsAlready } from "../store/outputs.ts";
import type { Store } from "../store/store.ts";
import type { BlobResult, Cache } from "./cache.ts";
import type { ImageSource } from "./source.ts";

/**
 * Take `wanted` files out of a compressed tar layer in one streaming pass: each into its output (`dest`, an
 * `OutputFile`) when it has one, else into the cache as a blob of its own (`ingestUnnamed`). A file the layer does
 * not hold is not in the result.
 *
 * @throws {IntegrityError} when the layer does not decompress or its tar is malformed.
 * @throws {StoreError} when a file cannot be written.
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
 * const found = await takeOutOfCompressed(store, "layer.tar.gz", "gzip", [{ path: "unikraft/bin/kernel" }], "layer");
 * assert.deepEqual(found.get("unikraft/bin/kernel"), {
 *   digest: digestOf("a unikernel"),
 *   size: 11,
 *   path: store.blobPath(digestOf("a unikernel")),
 *   cached: true,
 * });
 * ```
 */
export async function takeOutOfCompressed(
  store: Store | undefined,
  layerPath: string,
  compression: "gzip" | "zstd",
  wanted: Array<{ path: string; dest?: string }>,
  what: string,
): Promise<Map<string, TakenFile>> {
  const writers = new Map<string, MemberWriter>();
  const dests = new Map(wanted.map((w) => [w.path, w.dest]));
  try {
    const stream = decompressedStream(layerPath, compression);
    await extractTarMembers(
      stream,
      new Set(dests.keys()),
      (name, size) => {
        writers.get(name)?.abort();
        const writer = memberWriter(store, dests.get(name), { size, what: `"${name}" of layer "${what}"` });
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
  const found = new Map<string, TakenFile>();
  for (const [name, writer] of writers) {
    const result = writer.finish();
    if (result.status !== "committed") {
      writer.abort();
      for (const other of writers.values()) if (other !== writer) other.abort();
      const reason = result.status === "failed" ? result.error.message : result.reason;
      throw new StoreError(`Cannot write "${name}" of layer "${what}": ${reason}`);
    }
    found.set(name, { digest: result.digest, size: result.size, path: result.path, cached: writer.cached });
  }
  return found;
}

/** A file taken out of a layer: its digest and size, where it was written, and whether that is the cache. */
export interface TakenFile extends DerivedFile {
  path: string;
  cached: boolean;
}

/** Where a member's bytes go: its output, or a blob of the cache. */
interface MemberWriter {
  readonly cached: boolean;
  write(chunk: Uint8Array): void;
  finish(): WriteResult;
  abort(): void;
}

function memberWriter(store: Store | undefined, dest: string | undefined, options: { size: number; what: string }) {
  if (dest !== undefined) {
    let file: OutputFile;
    try {
      file = OutputFile.create(dest, { limit: options.size, what: options.what });
    } catch (error) {
      throw new StoreError(`Cannot write "${dest}": ${describeFsError(error)}`, { cause: error });
    }
    return {
      cached: false,
      write: (chunk: Uint8Array) => file.write(chunk),
      finish: () => file.commit(dest, { size: options.size }),
      abort: () => file.abort(),
    } satisfies MemberWriter;
  }
  const ingest = ingestUnnamed(store!, options);
  return {
    cached: true,
    write: (chunk: Uint8Array) => ingest.write(chunk),
    finish: () => ingest.commit(),
    abort: () => ingest.abort(),
  } satisfies MemberWriter;
}

/**
 * The files of compressed tar layers that must be taken out: one streaming pass per layer, each file straight into
 * its output (`destOf`), or into the cache when it needs a path there. A file whose recorded blob is cached, or
 * whose output holds it already, is not (unless `--verify`). `null` for a file the layer does not hold.
 */
export async function takeOutCompressedFiles(
  cache: Cache | undefined,
  source: ImageSource,
  files: ImageFile[],
  layers: Map<Digest, BlobResult>,
  recorded: Record<string, DerivedFile>,
  destOf: (file: ImageFile) => string | undefined,
): Promise<Map<string, TakenFile | null>> {
  const taken = new Map<string, TakenFile | null>();
  const byLayer = new Map<Digest, ImageFile[]>();
  for (const file of files) {
    if (file.compression === undefined) continue;
    const known = recorded[`${file.layer.digest}:${file.path}`];
    if (!source.verify && known !== undefined && isAtHand(cache, known, destOf(file))) continue;
    byLayer.set(file.layer.digest, [...(byLayer.get(file.layer.digest) ?? []), file]);
  }
  for (const [digest, wanted] of byLayer) {
    const toCache = wanted.filter((f) => destOf(f) === undefined);
    if (toCache.length > 0 && (cache === undefined || !cache.writable))
      throw new StoreError(
        `Cannot take ${toCache.map((f) => `"/${f.path}"`).join(", ")} out of the compressed layer "${digest}" of ` +
          `"${source.name}": with no output directory, that needs a cache that can be written (use -o DIR)`,
      );
    const layerPath = layers.get(digest)!.path;
    if (layerPath === undefined) throw new StoreError(`Cannot keep layer "${digest}": the cache cannot be written`);
    const found = await takeOutOfCompressed(
      cache?.store,
      layerPath,
      wanted[0]!.compression!,
      wanted.map((f) => ({ path: f.path!, ...(destOf(f) !== undefined && { dest: destOf(f)! }) })),
      digest,
    );
    for (const file of wanted) taken.set(`${digest}:${file.path}`, found.get(file.path!) ?? null);
  }
  return taken;
}

/** Whether a recorded file is at hand without its layer: its blob is cached, or its output holds it already. */
export function isAtHand(cache: Cache | undefined, known: DerivedFile, dest: string | undefined): boolean {
  if (cache === undefined) return false;
  if (dest === undefined) return cache.store.stat(known.digest)?.size === known.size;
  return holdsAlready(cache.store, dest, known.digest, known.size);
}
