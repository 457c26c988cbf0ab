/**
 * What a reference or a repository offers, without pulling it: `inspect`
 * and `tags`. The manifests go through the cache (so a later pull, or an
 * offline inspect, finds them); no layer is fetched and no reference is
 * recorded. Offline, both answer from the cache.
 *
 * @module
 */

import { NotFoundError, RegistryError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { findImageFiles } from "../oci/files.ts";
import { MAX_MANIFEST_REQUESTS } from "../oci/limits.ts";
import { type Descriptor, defaultMediaType, parseManifest } from "../oci/manifest.ts";
import type { Role } from "../oci/names.ts";
import { describe, type PlatformWant } from "../oci/platform.ts";
import type { Policy } from "../oci/policy.ts";
import type { Reference } from "../oci/reference.ts";
import { cachedTags, type DerivedFile, parseDerived } from "../store/index-file.ts";
import type { Cache } from "./cache.ts";
import { mapLimit } from "./map-limit.ts";
import type { InspectedSignature } from "./signatures.ts";
import { type ImageSource, registrySource, type SourceManifest } from "./source.ts";

/** One file of a manifest. */
export interface InspectedFile {
  role: Role;
  name: string;
  /** The layer that holds it. */
  layer: Digest;
  /** Its path inside the layer, for a file of a tar layer. */
  path?: string;
  /** Its own digest and size: the layer's, or for a file of a tar layer the one recorded when it was taken out. */
  digest?: Digest;
  bytes?: number;
  cached: boolean;
}

/** One manifest a reference offers: the only one, or one per platform of an index. */
export interface InspectedManifest {
  digest: Digest;
  platform?: PlatformWant;
  /** Its files; absent when the manifest is not cached and cannot be fetched (offline). */
  files?: InspectedFile[];
}

/** What a reference resolves to and offers. */
export interface Inspection {
  reference: string;
  digest: Digest;
  mediaType: string;
  manifests: InspectedManifest[];
  /** Its signatures: cosign's simple-signing manifest and Sigstore bundles, each with what it claims. */
  signatures: InspectedSignature[];
  /** With a policy: whether it accepts the image, and if not, why. */
  accepted?: boolean;
  reason?: string;
}

/**
 * Resolve `ref` and read its manifests: the platforms offered, and for each its files, with whether each is cached.
 *
 * @throws {NotFoundError} when the reference is not there (or, offline, not cached).
 * @example Offline, a reference the cache never saw is not found
 * ```ts
 * import assert from "node:assert";
 * import { Cache } from "./cache.ts";
 * import { inspectImage } from "./inspect.ts";
 * import { NotFoundError } from "../errors.ts";
 * import { parseReference } from "../oci/reference.ts";
 * const cache = new Cache({ dir: "/tmp/ocicache-example", offline: true });
 * await assert.rejects(inspectImage(cache, parseReference("127.0.0.1:5000/unikraft/nginx:1.25")), NotFoundError);
 * ```
 */
export async function inspectImage(cache: Cache, ref: Reference, policy?: Policy): Promise<Inspection> {
  const resolved = await cache.resolve(ref);
  const source = registrySource(cache, ref, resolved);
  const top = await source.top();
  const manifest = parseManifest(top.bytes, top.mediaType, resolved.name);
  const derived = resolved.entry?.digest === resolved.digest ? parseDerived(resolved.entry) : {};
  const inspect = (descriptor: Descriptor, platform?: PlatformWant) =>
    inspectManifest(cache, source, descriptor, derived, platform);
  const manifests =
    manifest.kind === "index"
      ? await mapLimit(manifest.manifests, MAX_MANIFEST_REQUESTS, (child) => inspect(child, describe(child)))
      : [await inspect({ mediaType: top.mediaType, digest: top.digest, size: top.bytes.byteLength })];
  const { listSignatures } = await import("./signatures.ts");
  const { signatures, accepted, reason } = await listSignatures(cache, ref, resolved, policy);
  return {
    reference: resolved.name,
    digest: resolved.digest,
    mediaType: defaultMediaType(manifest),
    manifests,
    signatures,
    ...(accepted !== undefined && { accepted }),
    ...(reason !== undefined && { reason }),
  };
}

async function inspectManifest(
  cache: Cache,
  source: ImageSource,
  descriptor: Descriptor,
  derived: Record<string, DerivedFile>,
  platform: PlatformWant | undefined,
): Promise<InspectedManifest> {
  const head = { digest: descriptor.digest, ...(platform !== undefined && { platform }) };
  let fetched: SourceManifest;
  try {
    fetched = await source.manifest(descriptor);
  } catch (error) {
    if (error instanceof NotFoundError && cache.options.offline) return head;
    throw error;
  }
  const manifest = parseManifest(fetched.bytes, descriptor.mediaType, `${source.name} (${descriptor.digest})`);
  if (manifest.kind !== "image") return { ...head, files: [] };
  const files = findImageFiles(manifest, true).map((file): InspectedFile => {
    const own = file.path === undefined ? file.layer : derived[`${file.layer.digest}:${file.path}`];
    const cached = own !== undefined && cache.store.stat(own.digest) !== undefined;
    return {
      role: file.role,
      name: file.name,
      layer: file.layer.digest,
      ...(file.path !== undefined && { path: file.path }),
      ...(own !== undefined && { digest: own.digest, bytes: own.size }),
      cached,
    };
  });
  return { ...head, files };
}

/**
 * The tags of `repo`'s repository, sorted: the registry's list (every page), or offline the tags the cache knows.
 * When the registry cannot be asked, the cache's, with a warning.
 *
 * @throws {NotFoundError} when the registry does not know the repository, or offline the cache holds no tag of it.
 */
export async function listRepositoryTags(cache: Cache, repo: Reference): Promise<string[]> {
  const known = () => [...new Set(cachedTags(cache.store.root, repo.registry, repo.repository))].sort();
  if (cache.options.offline) {
    const tags = known();
    if (tags.length === 0)
      throw new NotFoundError(`Cannot list the tags of "${repo.registry}/${repo.repository}" offline: none is cached`);
    return tags;
  }
  try {
    return (await (await cache.client()).listTags(repo)).sort();
  } catch (error) {
    const tags = known();
    if (!(error instanceof RegistryError) || tags.length === 0) throw error;
    cache.warn(
      `Cannot list the tags of "${repo.registry}/${repo.repository}" (${error.message}); the cached ones follow`,
    );
    return tags;
  }
}
