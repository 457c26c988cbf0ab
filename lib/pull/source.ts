/**
 * Where an image comes from, read-only (as oras-go's `ReadOnlyStorage`): the
 * manifest a reference names, manifests and blobs by descriptor, each
 * verified. A registry through the cache and a local OCI layout (`oci:DIR`)
 * are the two sources; `resolveImage` and `placeImageFiles` work on either.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";
import type { Descriptor } from "../oci/manifest.ts";
import type { Reference } from "../oci/reference.ts";
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

/** A read-only source of one image's manifests and blobs. */
export interface ImageSource {
  /** The reference as results and messages name it. */
  readonly name: string;
  /** Whether blobs are the caller's own files read in place (an `oci:DIR`), rather than the cache's. */
  readonly local: boolean;
  /** Whether blobs are re-hashed before use (`--verify`). */
  readonly verify: boolean;
  /** The manifest the reference names. */
  top(): Promise<SourceManifest>;
  /** A manifest by its descriptor. */
  manifest(descriptor: Descriptor): Promise<SourceManifest>;
  /** A blob as a verified file; `fallbackPath` takes it when the cache cannot, `tee` a copy while it downloads. */
  blob(descriptor: Descriptor, fallbackPath?: string, tee?: DownloadTee): Promise<BlobResult>;
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
  return {
    name: resolved.name,
    local: false,
    verify: cache.options.verify === true,
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
  };
}
