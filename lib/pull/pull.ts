/**
 * Pull a unikernel image: resolve the reference, choose the platform's
 * manifest, fetch the layers in parallel (bounded) and hand out its files,
 * each a cached blob of its own.
 *
 * @module
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fetchBlob, fetchBlobByDigest } from "./blobs.ts";
import type { BlobResult, Cache, Resolved } from "./cache.ts";
import { digestHex, hashFile, type Digest } from "../oci/digest.ts";
import { IntegrityError, StoreError } from "../errors.ts";
import { MAX_MANIFEST_BYTES } from "../oci/limits.ts";
import { defaultMediaType, parseManifest, type Descriptor } from "../oci/manifest.ts";
import { parseDerived, type DerivedFile } from "../store/index-file.ts";
import { placeFile, placeRange, removeQuietly } from "./output.ts";
import { describe, formatPlatform, selectManifest, type PlatformWant } from "../oci/platform.ts";
import type { Reference } from "../oci/reference.ts";
import { describeFsError } from "../store/writer.ts";
import { findTarMember } from "../oci/tar.ts";
import { type ImageFile, selectImageFiles } from "../oci/files.ts";
import { DERIVED_ANNOTATION, type Role } from "../oci/names.ts";

/** What to pull and where to put it. */
export interface PullOptions {
  /** The platform to choose from an index. @default the host's architecture */
  platform?: PlatformWant;
  /** Write the files into this directory. */
  outDir?: string;
  /** Hardlink cache files into `outDir` instead of copying. @default false */
  link?: boolean;
  /** Include `kernel.dbg`. @default false */
  debugKernel?: boolean;
  /** Only these roles. @default every role */
  roles?: Role[];
  /** Layers downloaded at once. @default 4 */
  concurrency?: number;
}

/** One file handed out by a pull. */
export interface PulledFile {
  role: Role;
  name: string;
  /** The output file, or the cache file when no `outDir` was given. */
  path: string;
  digest: Digest;
  size: number;
  /** Whether the cache already had it. */
  hit: boolean;
}

/** The result of a pull. */
export interface PullResult {
  reference: string;
  /** What the reference resolved to (an index or a manifest). */
  digest: Digest;
  /** The platform's image manifest. */
  manifest: Digest;
  /** The chosen platform, when the reference named an index. */
  platform?: string;
  files: PulledFile[];
  /** Whether nothing came from a registry. */
  hit: boolean;
}

/**
 * Pull an image through the cache.
 *
 * @throws {NotFoundError} when the reference, the platform or a kernel is not there.
 * @throws {IntegrityError} when content fails verification.
 * @throws {StoreError} when a file has no place: no `outDir` and a cache that cannot be written.
 * @example
 * ```ts
 * import { Cache } from "./cache.ts";
 * import { pullImage } from "./pull.ts";
 * import { parseReference } from "../oci/reference.ts";
 * const cache = new Cache({ dir: "/tmp/ocicache-example" });
 * const result = await pullImage(cache, parseReference("127.0.0.1:5000/unikraft/nginx:1.25"), { outDir: ".unikraft" }).catch(() => undefined);
 * ```
 */
export async function pullImage(cache: Cache, ref: Reference, options: PullOptions = {}): Promise<PullResult> {
  const resolved = await cache.resolve(ref);
  const top = await cache.manifestBytes(ref, resolved.digest);
  const topManifest = parseManifest(top.bytes, "", resolved.name);
  let image = topManifest;
  let imageDigest = resolved.digest;
  let platform: string | undefined;
  let hit = top.hit;
  if (topManifest.kind === "index") {
    const chosen = selectManifest(topManifest.manifests, options.platform ?? {}, resolved.name);
    const child = await cache.manifestBytes(ref, chosen.digest, chosen.size);
    hit &&= child.hit;
    platform = formatPlatform(describe(chosen));
    image = parseManifest(child.bytes, chosen.mediaType, `${resolved.name} (${platform})`);
    imageDigest = chosen.digest;
  }
  if (image.kind !== "image") throw new IntegrityError(`Cannot use "${resolved.name}": an index inside an index is not a unikernel image`);
  if (topManifest.kind === "index") cache.store.touch(resolved.digest);
  cache.store.touch(imageDigest);
  const files = selectImageFiles(image, options, resolved.name);
  const [pulled] = await Promise.all([pullFiles(cache, ref, resolved, files, options), keepConfig(cache, ref, image.config)]);
  await cache.record(resolved, { mediaType: defaultMediaType(topManifest), digest: resolved.digest, size: top.bytes.byteLength }, pulled.annotations);
  return {
    reference: resolved.name,
    digest: resolved.digest,
    manifest: imageDigest,
    ...(platform !== undefined && { platform }),
    files: pulled.files,
    hit: hit && pulled.files.every((f) => f.hit),
  };
}

/**
 * Fetch a single blob by digest (its size from the cache or a HEAD); with
 * the cache's `verify`, a cached copy is re-hashed first.
 *
 * @throws {NotFoundError} when neither the cache nor the registry has it.
 */
export function pullBlob(
  cache: Cache,
  ref: Reference & { digest: Digest },
  options: { onChunk?: (chunk: Uint8Array) => void | Promise<void>; fallbackPath?: string } = {},
): Promise<BlobResult & { size: number }> {
  return fetchBlobByDigest(cache, ref, ref.digest, options);
}

/**
 * Keep the image's config blob too (it is small), so that the cache is a
 * complete OCI layout for other tools; a failure only warns.
 */
async function keepConfig(cache: Cache, ref: Reference, config: Descriptor): Promise<void> {
  if (!cache.writable || config.size > MAX_MANIFEST_BYTES) return;
  try {
    await fetchBlob(cache, ref, config);
  } catch (error) {
    cache.warn(`Cannot keep the config blob "${config.digest}": ${(error as Error).message}`);
  }
}


async function pullFiles(
  cache: Cache,
  ref: Reference,
  resolved: Resolved,
  files: ImageFile[],
  options: PullOptions,
): Promise<{ files: PulledFile[]; annotations: Record<string, string> }> {
  const layers = [...new Map(files.map((f) => [f.layer.digest, f.layer])).values()];
  // Announce every download before the first byte, so that a progress bar knows the total from the start.
  for (const layer of layers) {
    if (cache.store.stat(layer.digest) === undefined) cache.options.onProgress?.({ digest: layer.digest, received: 0, total: layer.size });
  }
  const fallbacks = new Map<Digest, string>();
  const results = new Map<Digest, BlobResult>();
  if (options.outDir !== undefined) makeOutDir(options.outDir);
  try {
    await mapLimit(layers, options.concurrency ?? 4, async (layer) => {
      const fallbackPath = options.outDir === undefined ? undefined : join(options.outDir, `.ocicache-${digestHex(layer.digest).slice(0, 16)}.layer`);
      if (fallbackPath !== undefined) fallbacks.set(layer.digest, fallbackPath);
      results.set(layer.digest, await fetchBlob(cache, ref, layer, fallbackPath === undefined ? {} : { fallbackPath }));
    });
    // Only the reference's own entry says which blob holds a file of its layers: a mapping recorded for
    // another reference is never taken on trust.
    const recorded: Record<string, DerivedFile> = resolved.entry?.digest === resolved.digest ? parseDerived(resolved.entry) : {};
    const derived: Record<string, DerivedFile> = { ...recorded };
    const pulled = files.map((file) => {
      const layer = results.get(file.layer.digest)!;
      const placed = file.path === undefined
        ? placeWhole(file, layer, options)
        : placeMember(cache, file, layer, recorded[`${file.layer.digest}:${file.path}`], options);
      if (file.path !== undefined && placed.cached) derived[`${file.layer.digest}:${file.path}`] = { digest: placed.digest, size: placed.size };
      const { cached: _cached, ...rest } = placed;
      return rest;
    });
    const annotations: Record<string, string> = Object.keys(derived).length > 0 ? { [DERIVED_ANNOTATION]: JSON.stringify(derived) } : {};
    return { files: pulled, annotations };
  } finally {
    for (const path of fallbacks.values()) removeQuietly(path);
  }
}

type Placed = PulledFile & { cached: boolean };

function placeWhole(file: ImageFile, layer: BlobResult, options: PullOptions): Placed {
  const source = requirePath(layer, file);
  const path = options.outDir === undefined ? source : join(options.outDir, file.name);
  if (options.outDir !== undefined) placeFile(source, path, { link: options.link === true && layer.cached });
  return { role: file.role, name: file.name, path, digest: file.layer.digest, size: file.layer.size, hit: layer.hit, cached: layer.cached };
}

/**
 * A file inside a tar layer: the blob its reference recorded for it when that
 * is still there, else the byte range of the layer, hashed, and the blob of
 * that digest (written when absent). With `verify`, the range is always
 * hashed again from the (verified) layer and the blob re-hashed: a damaged
 * or planted one is replaced.
 */
function placeMember(cache: Cache, file: ImageFile, layer: BlobResult, known: DerivedFile | undefined, options: PullOptions): Placed {
  const base = { role: file.role, name: file.name };
  const dest = options.outDir === undefined ? undefined : join(options.outDir, file.name);
  const verify = cache.options.verify === true;
  if (!verify && known !== undefined && layer.cached && cache.store.stat(known.digest)?.size === known.size) {
    return placeCachedMember(cache, known, dest, options, { ...base, hit: layer.hit });
  }
  const layerPath = requirePath(layer, file);
  const range = findTarMember(layerPath, file.path!, file.layer.size);
  if (layer.cached) {
    const actual = { digest: hashFile(layerPath, range.offset, range.size).digest, size: range.size };
    if (known !== undefined && known.digest !== actual.digest) {
      cache.warn(`Dropping the recorded blob "${known.digest}" for "${file.path}" of layer "${file.layer.digest}": the layer holds "${actual.digest}"`);
    }
    const present = cache.store.stat(actual.digest)?.size === actual.size;
    if (present && (!verify || hashFile(cache.store.blobPath(actual.digest)).digest === actual.digest)) {
      return placeCachedMember(cache, actual, dest, options, { ...base, hit: layer.hit });
    }
  }
  if (layer.cached && cache.writable) {
    const result = cache.store.putRange(layerPath, range.offset, range.size);
    if (result.status === "committed") {
      if (dest !== undefined) placeFile(result.path, dest, { link: options.link });
      return { ...base, path: dest ?? result.path, digest: result.digest, size: range.size, hit: layer.hit, cached: true };
    }
    cache.warn(`Cannot keep "${file.path}" of layer "${file.layer.digest}" in the cache: ${result.status === "failed" ? result.error.message : result.reason}`);
  }
  if (dest === undefined) throw noPlace(file, cache);
  const digest = placeRange(layerPath, range.offset, range.size, dest);
  return { ...base, path: dest, digest, size: range.size, hit: false, cached: false };
}

function placeCachedMember(cache: Cache, blob: DerivedFile, dest: string | undefined, options: PullOptions, base: Pick<Placed, "role" | "name" | "hit">): Placed {
  cache.store.touch(blob.digest);
  const source = cache.store.blobPath(blob.digest);
  if (dest !== undefined) placeFile(source, dest, { link: options.link });
  return { ...base, path: dest ?? source, digest: blob.digest, size: blob.size, cached: true };
}

function makeOutDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new StoreError(`Cannot create "${dir}": ${describeFsError(error)}`, { cause: error });
  }
}

function requirePath(layer: BlobResult, file: ImageFile): string {
  if (layer.path === undefined) throw new StoreError(`Cannot keep layer "${file.layer.digest}": the cache cannot be written and no output directory was given (use -o DIR)`);
  return layer.path;
}

function noPlace(file: ImageFile, cache: Cache): StoreError {
  return new StoreError(`Cannot give a path for "${file.name}": the cache "${cache.store.root}" cannot be written (use pull -o DIR)`);
}


/** Run `fn` over `items`, at most `limit` at once; the first failure is thrown after all settle. */
async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}
