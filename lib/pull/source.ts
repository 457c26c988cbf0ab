/**
 * Where an image comes from, read-only (as oras-go's `ReadOnlyStorage`): the
 * manifest a reference names, manifests and blobs by descriptor, each
 * verified. A registry through the cache and a local OCI layout (`oci:DIR`)
 * are the two sources; `resolveImage` and `placeImageFiles` work on either.
 * What differs between them beyond reading (announcing downloads, a fallback
 * file, outputs written while a layer downloads, which files of a layer are
 * kept in the cache and recorded) is said here, by each source, and asked
 * nowhere else.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";
import { type ImageFile, layersOf } from "../oci/files.ts";
import type { Descriptor } from "../oci/manifest.ts";
import type { Reference } from "../oci/reference.ts";
import { layerFallbackPath, OutputTee, teeWorthIt } from "../store/output.ts";
import { fetchBlob } from "./blobs.ts";
import type { BlobResult, Cache, Resolved } from "./cache.ts";
import type { DownloadTee } from "./download.ts";

/** A verified manifest, and whether no registry was asked for it. */
export interface SourceManifest {
  digest: Digest;
  bytes: Uint8Array;
  /** The media type its descriptor or the registry gave, for a manifest that names none. */
  mediaType: string;
  hit: boolean;
}

/** How the files inside one layer of a source are placed. */
export interface MemberPolicy {
  /** What the reference recorded for a file of this layer may stand for it, unhashed. */
  trustRecorded: boolean;
  /** The file is kept in the cache as a blob of its own (else it goes to its output only). */
  keep: boolean;
  /** What the file is (digest, size) is recorded on the reference (only a registry's reference records anything). */
  record: boolean;
}

/** A read-only source of one image's manifests and blobs. */
export interface ImageSource {
  /** The reference as results and messages name it. */
  readonly name: string;
  /** Whether blobs are re-hashed before use (`--verify`). */
  readonly verify: boolean;
  /** The manifest the reference names. */
  top(): Promise<SourceManifest>;
  /** A manifest by its descriptor. */
  manifest(descriptor: Descriptor): Promise<SourceManifest>;
  /** A blob as a verified file; `fallbackPath` takes it when the cache cannot, `tee` a copy while it downloads. */
  blob(descriptor: Descriptor, fallbackPath?: string, tee?: DownloadTee): Promise<BlobResult>;
  /** Tell progress of each download `files` will need, before the first byte (a registry's). */
  announce(files: ImageFile[]): void;
  /** Where a layer goes in `outDir` when the cache cannot take it (a registry's; a layout's is read in place). */
  fallbackFor(layer: Descriptor, outDir: string | undefined): string | undefined;
  /** Outputs written while their layers download, for `-o` without `--link` (a registry's: see `OutputTee`). */
  tees(files: ImageFile[], options: { outDir?: string; link?: boolean }): Map<Digest, OutputTee>;
  /** Whether an output may be a hardlink to `layer`'s file: a cached blob, or the layout's own file. */
  linkable(layer: BlobResult): boolean;
  /** How the files inside `layer` are placed, `dest` being the output written from the layer (none: the cache). */
  members(layer: BlobResult, dest: string | undefined): MemberPolicy;
}

/**
 * A registry through the cache, for a reference already resolved.
 *
 * @example Read a reference's top manifest through the cache (needs a registry)
 * ```ts
 * import { Cache } from "./cache.ts";
 * import { registrySource } from "./source.ts";
 * import { parseReference } from "../oci/reference.ts";
 * const cache = new Cache({ dir: "/tmp/ocicache-example" });
 * const ref = parseReference("127.0.0.1:5000/unikraft/nginx:1.25");
 * const source = registrySource(cache, ref, await cache.resolve(ref));
 * console.log((await source.top()).digest);
 * ```
 */
export function registrySource(cache: Cache, ref: Reference, resolved: Resolved): ImageSource {
  const verify = cache.options.verify === true;
  return {
    name: resolved.name,
    verify,
    async top() {
      const { bytes, hit } = await cache.manifestBytes(ref, resolved.digest);
      return { digest: resolved.digest, bytes, mediaType: "", hit };
    },
    async manifest(descriptor) {
      const { bytes, hit } = await cache.manifestBytes(ref, descriptor.digest, descriptor.size);
      return { digest: descriptor.digest, bytes, mediaType: descriptor.mediaType, hit };
    },
    blob: (descriptor, fallbackPath, tee) =>
      fetchBlob(cache, ref, descriptor, {
        ...(fallbackPath !== undefined && { fallbackPath }),
        ...(tee !== undefined && { tee }),
      }),
    announce(files) {
      for (const layer of layersOf(files)) {
        if (cache.store.stat(layer.digest) !== undefined) continue;
        const names = files.filter((f) => f.layer.digest === layer.digest).map((f) => f.name);
        cache.options.onProgress?.({
          digest: layer.digest,
          received: 0,
          total: layer.size,
          image: resolved.name,
          files: names,
        });
      }
    },
    fallbackFor: (layer, outDir) => (outDir === undefined ? undefined : layerFallbackPath(outDir, layer.digest)),
    tees: (files, options) => openTees(cache, files, options),
    linkable: (layer) => layer.cached,
    // A file for an output is written there from the cached layer: derived data, never a second copy in the cache.
    members: (layer, dest) => ({
      trustRecorded: !verify && layer.cached,
      keep: layer.cached && dest === undefined,
      record: true,
    }),
  };
}

/**
 * The outputs written while their blobs download (`OutputTee`): for `-o` without `--link`, each whole-layer file the
 * cache does not hold yet, where the file system cannot clone the cache's file into place later.
 */
function openTees(cache: Cache, files: ImageFile[], options: { outDir?: string; link?: boolean }) {
  const tees = new Map<Digest, OutputTee>();
  const outDir = options.outDir;
  if (outDir === undefined || options.link || !teeWorthIt(cache.store.root, outDir)) return tees;
  for (const file of files) {
    const { layer } = file;
    if (file.path !== undefined || tees.has(layer.digest) || cache.store.stat(layer.digest) !== undefined) continue;
    try {
      tees.set(layer.digest, new OutputTee(outDir, layer.digest));
    } catch {
      // No second copy while it downloads: the output is copied afterwards.
    }
  }
  return tees;
}
