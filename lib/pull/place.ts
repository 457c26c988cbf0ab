/**
 * Fetch an image's layers (a few at once) and hand out its files: a whole
 * layer as it is, a file inside a tar layer as a blob of its own in the
 * cache, into `outDir` when one is given (by clone, copy or hardlink).
 *
 * @module
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { NotFoundError, StoreError } from "../errors.ts";
import { type Digest, hashFile } from "../oci/digest.ts";
import { type ImageFile, layersOf } from "../oci/files.ts";
import type { Role } from "../oci/names.ts";
import { findTarMember } from "../oci/tar.ts";
import { describeFsError } from "../store/files.ts";
import type { DerivedFile } from "../store/index-file.ts";
import { type OutputTee, placeFile, placeRange, removeQuietly, sameInode } from "../store/output.ts";
import { holdsAlready, rememberOutput } from "../store/outputs.ts";
import type { BlobResult, Cache } from "./cache.ts";
import { mapLimit } from "./map-limit.ts";
import { isAtHand, type TakenFile, takeOutCompressedFiles } from "./members.ts";
import type { ImageSource } from "./source.ts";

/** Where files go. */
export interface PlaceOptions {
  /** Write the files into this directory. */
  outDir?: string;
  /** Hardlink cache files into `outDir` instead of copying. @default false */
  link?: boolean;
  /** Layers fetched at once. @default 4 */
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
  /** Whether no byte of it came from a registry. */
  hit: boolean;
  /** A file of a tar layer written to its output sharing the layer's extents (a clone of its byte range). */
  cloned?: boolean;
}

/**
 * Fetch the layers of `files` from `source` and place each file. `recorded`
 * are the blobs the reference's own entry names for files of its tar layers;
 * the result says which blob holds each such file now.
 *
 * @throws {StoreError} when a file has no place: no `outDir` and a cache that cannot be written.
 * @throws {IntegrityError} when a layer fails verification.
 * @example An image's kernel written into an output directory (a source of the example's own)
 * ```ts
 * import assert from "node:assert";
 * import { readFileSync, writeFileSync } from "node:fs";
 * import { placeImageFiles } from "./place.ts";
 * import { resolveImage } from "./image.ts";
 * import { digestOf } from "../oci/digest.ts";
 * import type { ImageSource } from "./source.ts";
 * const kernel = { mediaType: "application/vnd.unikraft.kernel.v1", digest: digestOf("a unikernel"), size: 11 };
 * const config = { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf("{}"), size: 2 };
 * const mediaType = "application/vnd.oci.image.manifest.v1+json";
 * const bytes = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType, config, layers: [kernel] }));
 * writeFileSync("kernel.blob", "a unikernel");
 * const source: ImageSource = {
 *   name: "example",
 *   verify: false,
 *   top: async () => ({ digest: digestOf(bytes), bytes, mediaType, hit: true }),
 *   manifest: async () => Promise.reject(new Error("an image manifest names no other")),
 *   blob: async () => ({ path: "kernel.blob", hit: true, cached: false }),
 *   announce: () => {},
 *   fallbackFor: () => undefined,
 *   tees: () => new Map(),
 *   linkable: () => true,
 *   members: () => ({ trustRecorded: false, keep: false, record: false }),
 * };
 * const image = await resolveImage(source);
 * const placed = await placeImageFiles(undefined, source, image.files, {}, { outDir: "out" });
 * assert.equal(readFileSync(placed.files[0]!.path, "utf8"), "a unikernel");
 * ```
 */
export async function placeImageFiles(
  cache: Cache | undefined,
  source: ImageSource,
  files: ImageFile[],
  recorded: Record<string, DerivedFile>,
  options: PlaceOptions,
): Promise<{ files: PulledFile[]; derived: Record<string, DerivedFile> }> {
  const layers = layersOf(files);
  // Every download announced before the first byte, so that a progress bar knows the total from the start.
  source.announce(files);
  const fallbacks: string[] = [];
  const results = new Map<Digest, BlobResult>();
  if (options.outDir !== undefined) makeOutDir(options.outDir);
  const tees = source.tees(files, options);
  try {
    await mapLimit(layers, options.concurrency ?? 4, async (layer) => {
      const fallbackPath = source.fallbackFor(layer, options.outDir);
      if (fallbackPath !== undefined) fallbacks.push(fallbackPath);
      results.set(layer.digest, await source.blob(layer, fallbackPath, tees.get(layer.digest)));
    });
    const taken = await takeOutCompressedFiles(cache, source, files, results, recorded, (f) => directPath(f, options));
    const derived: Record<string, DerivedFile> = { ...recorded };
    const pulled = files.flatMap((file) => {
      const layer = results.get(file.layer.digest)!;
      if (file.path === undefined) return [placeWhole(cache, source, file, layer, options, tees)];
      const key = `${file.layer.digest}:${file.path}`;
      const placed =
        file.compression === undefined
          ? placeMemberIfThere(cache, source, file, layer, recorded[key], options)
          : placeTakenMember(cache, file, taken.get(key), recorded[key], { ...options, hit: layer.hit });
      if (placed === undefined) return [];
      // What the file is, recorded whether or not its blob is kept: a later pull -o finds its output unchanged.
      if (source.members(layer, undefined).record) derived[key] = { digest: placed.digest, size: placed.size };
      return [placed];
    });
    const sought = files.filter((f) => f.wellKnown);
    if (sought.length > 0 && !pulled.some((f) => sought.some((s) => s.role === f.role))) {
      throw new NotFoundError(
        `Cannot find a ${sought.map((f) => f.role).join(", ")} in "${source.name}": no annotation names one, and its ` +
          `last tar layer "${sought[0]!.layer.digest}" holds none of ${sought.map((f) => `/${f.path}`).join(", ")}`,
      );
    }
    return { files: pulled, derived };
  } finally {
    for (const path of fallbacks) removeQuietly(path);
    for (const tee of tees.values()) tee.discard();
  }
}

/**
 * Files handed out from the cache (no `outDir`) need the cache to take every layer it lacks: a read-only or full
 * cache is said before the first byte is downloaded, not after.
 *
 * @throws {StoreError} naming the cache and what stops it.
 */
export function checkRoom(cache: Cache, source: ImageSource, files: ImageFile[]): void {
  const layers = layersOf(files);
  const needed = layers.filter((l) => cache.store.stat(l.digest)?.size !== l.size).reduce((sum, l) => sum + l.size, 0);
  if (needed === 0) return;
  const why = cache.roomFor(needed);
  if (why === undefined) return;
  throw new StoreError(
    `Cannot keep the files of "${source.name}" in the cache "${cache.store.root}": ${why} (use -o DIR, or free ` +
      `space with ocicache gc)`,
  );
}

/**
 * Where a file inside a tar layer is written straight from the layer: its output, unless it is to be a hardlink
 * (`--link`), which needs a file of the cache to link to.
 */
function directPath(file: ImageFile, options: PlaceOptions): string | undefined {
  return options.outDir === undefined || options.link ? undefined : join(options.outDir, file.name);
}

/**
 * A file of a compressed tar layer: taken out just now (into its output, or into the cache), or recorded and at hand
 * (its blob cached, or its output holding it already); a well-known path the layer lacks is none.
 */
function placeTakenMember(
  cache: Cache | undefined,
  file: ImageFile,
  taken: TakenFile | null | undefined,
  known: DerivedFile | undefined,
  options: PlaceOptions & { hit: boolean },
): PulledFile | undefined {
  const base = { role: file.role, name: file.name, hit: options.hit };
  const blob = taken === undefined ? known : taken;
  if (blob === null || blob === undefined) {
    if (file.wellKnown) return undefined;
    throw new NotFoundError(`Cannot find "/${file.path}" in the compressed layer "${file.layer.digest}"`);
  }
  if (taken !== undefined && known !== undefined && known.digest !== blob.digest) warnDropped(cache, file, known, blob);
  const direct = directPath(file, options);
  if (direct !== undefined) {
    if (taken !== undefined && cache !== undefined) rememberOutput(cache.store, direct, blob.digest, blob.size);
    return { ...base, path: direct, digest: blob.digest, size: blob.size };
  }
  const out = options.outDir === undefined ? undefined : join(options.outDir, file.name);
  return placeCachedMember(cache!, blob, out, options, base);
}

function warnDropped(cache: Cache | undefined, file: ImageFile, known: DerivedFile, actual: DerivedFile): void {
  cache?.warn(
    `Dropping the recorded blob "${known.digest}" for "${file.path}" of layer "${file.layer.digest}": the layer ` +
      `holds "${actual.digest}"`,
  );
}

/** `placeMember`, for a file that may not be there: one looked for at a well-known path is none when it is not. */
function placeMemberIfThere(...args: Parameters<typeof placeMember>): PulledFile | undefined {
  try {
    return placeMember(...args);
  } catch (error) {
    if (error instanceof NotFoundError && args[2].wellKnown) return undefined;
    throw error;
  }
}

function placeWhole(
  cache: Cache | undefined,
  source: ImageSource,
  file: ImageFile,
  layer: BlobResult,
  options: PlaceOptions,
  tees: Map<Digest, OutputTee>,
): PulledFile {
  const from = requirePath(layer, file);
  const path = options.outDir === undefined ? from : join(options.outDir, file.name);
  const tee = tees.get(file.layer.digest);
  tees.delete(file.layer.digest);
  if (
    options.outDir !== undefined &&
    !(tee !== undefined && cache !== undefined && placeTee(cache, tee, path, file.layer))
  )
    placeOutput(cache, from, path, file.layer, options.link === true && source.linkable(layer));
  tee?.discard();
  return { role: file.role, name: file.name, path, digest: file.layer.digest, size: file.layer.size, hit: layer.hit };
}

/**
 * Put a whole tee in place at `dest` (unless `dest` holds the content already): the blob it copies was verified, and
 * it holds the same bytes, from the first. `false` when it cannot be used.
 */
function placeTee(cache: Cache, tee: OutputTee, dest: string, blob: { digest: Digest; size: number }): boolean {
  if (holdsAlready(cache.store, dest, blob.digest, blob.size, cache.options.verify)) return true;
  if (!tee.finish(dest, blob.size)) return false;
  rememberOutput(cache.store, dest, blob.digest, blob.size);
  return true;
}

/**
 * A file inside a tar layer: derived data, made again from the (verified) layer when it is needed. Into an output,
 * it is written straight from the layer's byte range (nothing kept in the cache), unless the output holds it
 * already. For a path in the cache (or a hardlink), it is the blob its reference recorded when that is still there,
 * else the byte range, hashed, kept as a blob of that digest. With `verify`, the range is always hashed again and a
 * cached blob re-hashed: a damaged or planted one is replaced. The source says what may be trusted and kept.
 */
function placeMember(
  cache: Cache | undefined,
  source: ImageSource,
  file: ImageFile,
  layer: BlobResult,
  known: DerivedFile | undefined,
  options: PlaceOptions,
): PulledFile {
  const base = { role: file.role, name: file.name, hit: layer.hit };
  const dest = options.outDir === undefined ? undefined : join(options.outDir, file.name);
  const direct = directPath(file, options);
  const policy = source.members(layer, direct);
  if (policy.trustRecorded && known !== undefined && isAtHand(cache, known, direct))
    return direct !== undefined
      ? { ...base, path: direct, digest: known.digest, size: known.size }
      : placeCachedMember(cache!, known, dest, options, base);
  const layerPath = requirePath(layer, file);
  const range = findTarMember(layerPath, file.path!, file.layer.size);
  if (policy.keep && cache !== undefined) {
    const actual = { digest: hashFile(layerPath, range.offset, range.size).digest, size: range.size };
    if (known !== undefined && known.digest !== actual.digest) warnDropped(cache, file, known, actual);
    const present = cache.store.stat(actual.digest)?.size === actual.size;
    if (present && (!source.verify || hashFile(cache.store.blobPath(actual.digest)).digest === actual.digest)) {
      return placeCachedMember(cache, actual, dest, options, base);
    }
    if (cache.writable) {
      const result = cache.store.putRange(layerPath, range.offset, range.size);
      if (result.status === "committed") {
        if (dest !== undefined) placeOutput(cache, result.path, dest, result, options.link === true);
        return { ...base, path: dest ?? result.path, digest: result.digest, size: range.size };
      }
      cache.warn(
        `Cannot keep "${file.path}" of layer "${file.layer.digest}" in the cache: ` +
          `${result.status === "failed" ? result.error.message : result.reason}`,
      );
    }
  }
  if (dest === undefined) throw noPlace(file, source, cache);
  const { digest, cloned } = placeRange(layerPath, range.offset, range.size, dest);
  if (known !== undefined && known.digest !== digest) warnDropped(cache, file, known, { digest, size: range.size });
  if (cache !== undefined) rememberOutput(cache.store, dest, digest, range.size);
  return { ...base, path: dest, digest, size: range.size, ...(cloned && { cloned }) };
}

function placeCachedMember(
  cache: Cache,
  blob: DerivedFile,
  dest: string | undefined,
  options: PlaceOptions,
  base: Pick<PulledFile, "role" | "name" | "hit">,
): PulledFile {
  cache.store.touch(blob.digest);
  const from = cache.store.blobPath(blob.digest);
  if (dest !== undefined) placeOutput(cache, from, dest, blob, options.link === true);
  return { ...base, path: dest ?? from, digest: blob.digest, size: blob.size };
}

/**
 * Place a file at `dest` unless it holds that content already (rule 10: an
 * unchanged output keeps its inode and mtime): a hardlink to `from` itself, or
 * a copy ocicache made and recorded that nobody changed since.
 */
function placeOutput(
  cache: Cache | undefined,
  from: string,
  dest: string,
  blob: { digest: Digest; size: number },
  link: boolean,
): void {
  const holds = () => holdsAlready(cache!.store, dest, blob.digest, blob.size, cache!.options.verify);
  if (link ? sameInode(from, dest) : cache !== undefined && holds()) return;
  placeFile(from, dest, { link });
  if (!link && cache !== undefined) rememberOutput(cache.store, dest, blob.digest, blob.size);
}

function makeOutDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new StoreError(`Cannot create "${dir}": ${describeFsError(error)}`, { cause: error });
  }
}

function requirePath(layer: BlobResult, file: ImageFile): string {
  if (layer.path === undefined)
    throw new StoreError(
      `Cannot keep layer "${file.layer.digest}": the cache cannot be written and no output directory was given (use ` +
        `-o DIR)`,
    );
  return layer.path;
}

function noPlace(file: ImageFile, source: ImageSource, cache: Cache | undefined): StoreError {
  const why = cache === undefined ? "no cache was given" : `the cache "${cache.store.root}" cannot be written`;
  return new StoreError(
    `Cannot give a path for "${file.name}" of "${source.name}": it is inside a tar layer and ${why} (use pull -o DIR)`,
  );
}
