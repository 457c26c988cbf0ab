/**
 * Pull a unikernel image from a registry through the cache, or from a local
 * OCI layout: both resolve with `resolveImage` and place files with
 * `placeImageFiles`; a registry pull also keeps the config blob, records the
 * reference in `index.json` and remembers what it came to. A hit that was
 * remembered is answered from the memo and a few `lstat`s: the walk's
 * modules (manifests, layers, outputs) are loaded only when it runs.
 *
 * @module
 */

import { join } from "node:path";
import { PolicyError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { layersOf } from "../oci/files.ts";
import { MAX_MANIFEST_BYTES } from "../oci/limits.ts";
import { type Descriptor, defaultMediaType } from "../oci/manifest.ts";
import { DERIVED_ANNOTATION, type Role, SIGNATURES_ANNOTATION } from "../oci/names.ts";
import { hostArchitecture, type PlatformWant, platformDirName } from "../oci/platform.ts";
import type { Policy } from "../oci/policy.ts";
import type { LayoutSource, Reference } from "../oci/reference.ts";
import { parseDerived } from "../store/index-file.ts";
import { type PullMemo, readPullMemo, writePullMemo } from "../store/refs.ts";
import type { StreamHooks } from "./blob-stream.ts";

export type { StreamHooks };

import type { FetchBlobOptions } from "./blobs.ts";
import type { BlobResult, Cache, Resolved } from "./cache.ts";
import type { ImageChoice, ResolvedImage } from "./image.ts";
import { applyLock, type LockUse } from "./lock.ts";
import type { PlaceOptions, PulledFile } from "./place.ts";
import type { ImageSource } from "./source.ts";

/** What to pull and where to put it. */
export interface PullOptions extends ImageChoice, PlaceOptions {
  /** A lock file: a reference it holds is pulled at its locked digest, with no question to the registry. */
  lock?: LockUse;
  /** A signature policy: nothing of an image it refuses is handed out (`PolicyError`). */
  policy?: Policy;
}

/** The result of a pull. */
export interface PullResult {
  reference: string;
  /** What the reference resolved to (an index or a manifest). */
  digest: Digest;
  /** The platform's image manifest. */
  manifest: Digest;
  /** The chosen platform, when the reference named an index. */
  platform?: PlatformWant;
  files: PulledFile[];
  /** Whether nothing came from a registry. */
  hit: boolean;
}

/**
 * Pull an image through the cache, and record the reference in `index.json`.
 *
 * @throws {NotFoundError} when the reference, the platform or a kernel is not there.
 * @throws {IntegrityError} when content fails verification.
 * @throws {StoreError} when a file has no place: no `outDir` and a cache that cannot be written.
 * @example A registry that cannot be reached
 * ```ts
 * import assert from "node:assert";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { Cache, parseReference, pullImage, RegistryError } from "ocicache";
 * const dir = mkdtempSync(join(tmpdir(), "ocicache-"));
 * const cache = new Cache({ dir: join(dir, "cache"), registry: { retries: 0 } });
 * // Nothing listens on port 9 here: the pull fails with a registry error (exit code 5).
 * const ref = parseReference("127.0.0.1:9/unikraft/nginx:1.25");
 * const error = await pullImage(cache, ref, { outDir: join(dir, "out") }).catch((e) => e);
 * assert(error instanceof RegistryError);
 * assert.equal(error.kind, "unreachable");
 * ```
 */
export async function pullImage(cache: Cache, ref: Reference, options: PullOptions = {}): Promise<PullResult> {
  const resolved = await cache.resolve(applyLock(ref, options.lock));
  const signed = await enforcePolicy(cache, ref, resolved, options);
  const remembered = rememberedHit(cache, resolved, options);
  if (remembered !== undefined) {
    // A tag the registry confirmed is stamped as a walk would stamp it (and signatures found now are kept).
    const { entry } = resolved;
    const fresh = Object.entries(signed).some(([key, value]) => entry!.annotations[key] !== value);
    if (resolved.checked || fresh)
      await cache.record(resolved, { mediaType: entry!.mediaType, digest: entry!.digest, size: entry!.size }, signed);
    return remembered;
  }
  const { resolveImage } = await import("./image.ts");
  const walk = (s: ImageSource) => resolveImage(s, options).then((i) => [i]);
  const [pulled] = await pullImages(cache, ref, resolved, options, walk, { annotations: signed });
  const { result, image } = pulled!;
  remember(cache, resolved, options, image, result);
  return result;
}

/**
 * Pull every platform of an index through the cache (the one image, for a manifest), one platform after another,
 * and record the reference once. Without `outDir`, each platform's files stay in the cache; with it, each platform
 * gets a directory of its own there (`DIR/linux-amd64-qemu/kernel`, see `platformDirName`).
 *
 * @throws {NotFoundError} when the reference is not there, or no platform has a unikernel's files.
 * @throws {IntegrityError} when content fails verification.
 * @example Every platform, offline: what is not cached is not found
 * ```ts
 * import assert from "node:assert";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { Cache, NotFoundError, parseReference, pullAllPlatforms } from "ocicache";
 * const cache = new Cache({ dir: join(mkdtempSync(join(tmpdir(), "ocicache-")), "cache"), offline: true });
 * const error = await pullAllPlatforms(cache, parseReference("127.0.0.1:9/unikraft/nginx:1.25")).catch((e) => e);
 * assert.ok(error instanceof NotFoundError);
 * ```
 */
export async function pullAllPlatforms(cache: Cache, ref: Reference, options: PullOptions = {}): Promise<PullResult[]> {
  const resolved = await cache.resolve(applyLock(ref, options.lock));
  const annotations = await enforcePolicy(cache, ref, resolved, options);
  const { resolveAllPlatforms } = await import("./image.ts");
  const walk = (source: ImageSource) => resolveAllPlatforms(source, options);
  const pulled = await pullImages(cache, ref, resolved, options, walk, { annotations, perPlatform: true });
  return pulled.map((p) => p.result);
}

async function pullImages(
  cache: Cache,
  ref: Reference,
  resolved: Resolved,
  options: PullOptions,
  resolve: (source: ImageSource) => Promise<ResolvedImage[]>,
  extra: { annotations?: Record<string, string>; perPlatform?: boolean } = {},
): Promise<Array<{ result: PullResult; image: ResolvedImage }>> {
  const [{ registrySource }, { checkRoom, placeImageFiles }] = await Promise.all([
    import("./source.ts"),
    import("./place.ts"),
  ]);
  const source = registrySource(cache, ref, resolved);
  const images = await resolve(source);
  const top = images[0]!.top;
  if (top.manifest.kind === "index") cache.store.touch(resolved.digest);
  // Only the reference's own entry says which blob holds a file of its layers: a record made for another
  // reference is never taken on trust.
  let derived = resolved.entry?.digest === resolved.digest ? parseDerived(resolved.entry) : {};
  const results: Array<{ result: PullResult; image: ResolvedImage }> = [];
  // Files handed out from the cache need it to take what it lacks: a read-only or full cache is said first.
  if (options.outDir === undefined)
    checkRoom(
      cache,
      source,
      images.flatMap((i) => i.files),
    );
  const outDirs = extra.perPlatform && options.outDir !== undefined ? platformDirs(options.outDir, images) : undefined;
  for (const [i, image] of images.entries()) {
    cache.store.touch(image.image.digest);
    // The config blob is fetched beside the files; a failed pull still waits for it, so nothing runs on after.
    const config = keepConfig(cache, ref, image.image.manifest.config);
    try {
      const pulled = await placeImageFiles(
        cache,
        source,
        image.files,
        derived,
        outDirs === undefined ? options : { ...options, outDir: outDirs[i]! },
      );
      derived = pulled.derived;
      results.push({ result: result(resolved.name, image, pulled.files), image });
    } finally {
      await config;
    }
  }
  const annotations: Record<string, string> = {
    ...extra.annotations,
    ...(Object.keys(derived).length > 0 && { [DERIVED_ANNOTATION]: JSON.stringify(derived) }),
  };
  await cache.record(
    resolved,
    { mediaType: defaultMediaType(top.manifest), digest: resolved.digest, size: top.bytes.byteLength },
    annotations,
  );
  return results;
}

/**
 * The signature policy, when there is one, before anything of the image is fetched or handed out; the annotation
 * that keeps the signatures that met it with the image (none without a policy).
 */
async function enforcePolicy(
  cache: Cache,
  ref: Reference,
  resolved: Resolved,
  options: PullOptions,
): Promise<Record<string, string>> {
  if (options.policy === undefined) return {};
  const { checkPolicy } = await import("./signatures.ts");
  const signatures = await checkPolicy(cache, ref, resolved, options.policy);
  return signatures.length === 0 ? {} : { [SIGNATURES_ANNOTATION]: JSON.stringify(signatures) };
}

/** Each platform's directory under `outDir`; two platforms that would share a name are told apart by manifest. */
function platformDirs(outDir: string, images: ResolvedImage[]): string[] {
  const names = images.map((image) => platformDirName(image.platform ?? {}));
  return names.map((name, i) =>
    join(outDir, names.indexOf(name) === i ? name : `${name}-${images[i]!.image.digest.slice(7, 19)}`),
  );
}

/**
 * Take a unikernel's files from a local OCI layout (`oci:DIR[:tag]`), read
 * where it is. A file inside a tar layer goes to `outDir`, or without one
 * into the cache as a blob of its own (the only way it can have a path).
 *
 * @throws {NotFoundError} when the layout, the tag, the platform or a file is missing.
 * @throws {IntegrityError} when a manifest or (with `verify`) a blob fails verification.
 * @example Take a kernel out of a local OCI layout
 * ```ts
 * import assert from "node:assert";
 * import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { digestOf, pullLayout } from "ocicache";
 * const dir = mkdtempSync(join(tmpdir(), "layout-"));
 * mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
 * const put = (text: string) => {
 *   const digest = digestOf(text);
 *   writeFileSync(join(dir, "blobs", "sha256", digest.slice(7)), text);
 *   return { digest, size: Buffer.byteLength(text) };
 * };
 * const layers = [{ mediaType: "application/vnd.unikraft.kernel.v1", ...put("a unikernel") }];
 * const config = { mediaType: "application/vnd.oci.image.config.v1+json", ...put("{}") };
 * const mediaType = "application/vnd.oci.image.manifest.v1+json";
 * const manifest = put(JSON.stringify({ schemaVersion: 2, mediaType, config, layers }));
 * const annotations = { "org.opencontainers.image.ref.name": "1.0" };
 * const index = { schemaVersion: 2, manifests: [{ mediaType, ...manifest, annotations }] };
 * writeFileSync(join(dir, "index.json"), JSON.stringify(index));
 * const result = await pullLayout(undefined, { dir, tag: "1.0" }, { outDir: join(dir, "out") });
 * assert.equal(readFileSync(result.files[0]!.path, "utf8"), "a unikernel");
 * ```
 */
export async function pullLayout(
  cache: Cache | undefined,
  layout: LayoutSource,
  options: PullOptions & { verify?: boolean } = {},
): Promise<PullResult> {
  // The signatures of a local layout are not checked: a policy that asks for any is not met.
  if (options.policy?.default.some((r) => r.type !== "insecureAcceptAnything"))
    throw new PolicyError(`Cannot accept "oci:${layout.dir}": the policy's default asks for more than a layout gives`);
  const [{ layoutSource }, { resolveImage }, { placeImageFiles }] = await Promise.all([
    import("./layout-source.ts"),
    import("./image.ts"),
    import("./place.ts"),
  ]);
  const source = layoutSource(layout, options.verify === true, cache);
  const image = await resolveImage(source, options);
  const pulled = await placeImageFiles(cache, source, image.files, {}, options);
  return result(source.name, image, pulled.files);
}

function result(name: string, image: ResolvedImage, files: PulledFile[]): PullResult {
  return {
    reference: name,
    digest: image.top.digest,
    manifest: image.image.digest,
    ...(image.platform !== undefined && { platform: image.platform }),
    files,
    hit: image.top.hit && image.image.hit && files.every((f) => f.hit),
  };
}

/** What `pull --json` and `POST /v1/pull` print: a file's size is `bytes`, as everywhere in the JSON. */
export function pullJson(result: PullResult) {
  return { ...result, files: result.files.map(({ size, ...file }) => ({ ...file, bytes: size })) };
}

/**
 * Fetch one blob whose size is known into the cache (the mirror's miss): `firstResponse` is an answer to its `GET`
 * the caller already has; `onChunk` sees every byte as it arrives, for a client served while the cache cannot be
 * written. The blob stays in the cache when it can.
 *
 * @throws {IntegrityError} when the bytes are not the blob.
 * @throws {RegistryError} when the registry fails or the connection drops.
 */
export async function pullDescribedBlob(
  cache: Cache,
  ref: Reference,
  descriptor: Descriptor,
  options: FetchBlobOptions = {},
): Promise<BlobResult> {
  const { fetchBlob } = await import("./blobs.ts");
  return fetchBlob(cache, ref, descriptor, options);
}

/**
 * The body of a blob being pulled (`done`), for a client who reads it as it arrives: the cache's ingest as it grows,
 * then the committed blob, each chunk verified as it goes and the last held back until the digest is checked.
 */
export async function pulledBody(
  cache: Cache,
  expected: { digest: Digest; size: number },
  done: Promise<BlobResult>,
  hooks: StreamHooks,
  chunkBytes: number,
): Promise<ReadableStream<Uint8Array>> {
  const { downloadBody } = await import("./blob-stream.ts");
  return downloadBody(cache.store, expected, done, hooks, chunkBytes);
}

/**
 * Fetch a single blob by digest (its size from the cache or a HEAD); with
 * the cache's `verify`, a cached copy is re-hashed first.
 *
 * @throws {NotFoundError} when neither the cache nor the registry has it.
 * @example A blob that is not cached, offline
 * ```ts
 * import assert from "node:assert";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { Cache, NotFoundError, parseReference, pullBlob } from "ocicache";
 * const cache = new Cache({ dir: mkdtempSync(join(tmpdir(), "ocicache-")), offline: true });
 * const ref = parseReference(`127.0.0.1:5000/unikraft/nginx@sha256:${"a".repeat(64)}`);
 * const error = await pullBlob(cache, { ...ref, digest: ref.digest! }).catch((e) => e);
 * assert(error instanceof NotFoundError);
 * ```
 */
export async function pullBlob(
  cache: Cache,
  ref: Reference & { digest: Digest },
  options: { onChunk?: (chunk: Uint8Array) => void | Promise<void>; fallbackPath?: string } = {},
): Promise<BlobResult & { size: number }> {
  const { fetchBlobByDigest } = await import("./blobs.ts");
  return fetchBlobByDigest(cache, ref, ref.digest, options);
}

/**
 * Keep the image's config blob too (it is small), so that the cache is a
 * complete OCI layout for other tools; a failure only warns.
 */
async function keepConfig(cache: Cache, ref: Reference, config: Descriptor): Promise<void> {
  if (!keepsConfig(cache, config)) return;
  try {
    const { fetchBlob } = await import("./blobs.ts");
    await fetchBlob(cache, ref, config, { files: ["config"] });
  } catch (error) {
    cache.warn(`Cannot keep the config blob "${config.digest}": ${(error as Error).message}`);
  }
}

function keepsConfig(cache: Cache, config: Descriptor): boolean {
  return cache.writable && config.size <= MAX_MANIFEST_BYTES;
}

/** What a pull chose, as the memo's key: the platform asked for (and this machine's, the default), the files. */
function choiceKey(options: PullOptions): string {
  return JSON.stringify([
    options.platform ?? {},
    hostArchitecture(),
    options.roles ?? null,
    options.debugKernel === true,
  ]);
}

/**
 * A hit answered from what an earlier pull of the same reference and choice came to: only into the cache (no
 * `outDir`), without `--verify` (which re-hashes everything), for the digest the reference's entry names, and only
 * while every manifest, blob and file is there with its size. It records the uses a walk would.
 */
function rememberedHit(cache: Cache, resolved: Resolved, options: PullOptions): PullResult | undefined {
  if (options.outDir !== undefined || cache.options.verify) return undefined;
  if (resolved.entry?.digest !== resolved.digest) return undefined;
  const image = readPullMemo(resolved, resolved.digest, choiceKey(options));
  if (image === undefined) return undefined;
  const { store } = cache;
  const sized = [...image.blobs, ...image.files];
  if (image.manifests.some((digest) => store.stat(digest) === undefined)) return undefined;
  if (sized.some(({ digest, size }) => store.stat(digest)?.size !== size)) return undefined;
  for (const digest of image.manifests) store.touch(digest);
  for (const { digest, size } of image.blobs) {
    store.touch(digest);
    cache.options.onEvent?.({ type: "hit", bytes: size });
  }
  for (const { digest } of image.files) store.touch(digest);
  return {
    reference: resolved.name,
    digest: resolved.digest,
    manifest: image.manifests.at(-1)!,
    ...(image.platform !== undefined && { platform: image.platform }),
    files: image.files.map(({ role, name, digest, size }) => ({
      role: role as Role,
      name,
      path: store.blobPath(digest),
      digest,
      size,
      hit: true,
    })),
    hit: true,
  };
}

/** Remember what a pull into the cache came to, for the next hit (`rememberedHit`); a pull into `outDir` too. */
function remember(cache: Cache, resolved: Resolved, options: PullOptions, image: ResolvedImage, pulled: PullResult) {
  if (!cache.writable) return;
  const config = image.image.manifest.config;
  const layers = layersOf(image.files);
  const remembered: PullMemo = {
    manifests: [...(image.top.manifest.kind === "index" ? [resolved.digest] : []), image.image.digest],
    ...(image.platform !== undefined && { platform: { ...image.platform } as Record<string, string> }),
    blobs: [...(keepsConfig(cache, config) ? [config] : []), ...layers].map(({ digest, size }) => ({ digest, size })),
    files: pulled.files.map(({ role, name, digest, size }) => ({ role, name, digest, size })),
  };
  writePullMemo(cache.store, resolved.name, resolved.digest, choiceKey(options), remembered);
}
