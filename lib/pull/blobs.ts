/**
 * Blobs through the cache: the cached copy when it passes its checks (its
 * size, and with `verify` its digest), else a verified download; a copy that
 * fails a check is dropped and fetched again (docs/ARCHITECTURE.md, rule 2).
 *
 * @module
 */

import { IntegrityError, NotFoundError } from "../errors.ts";
import { type Digest, hashFile } from "../oci/digest.ts";
import { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_LOCK_TIMEOUT_MS } from "../oci/limits.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { formatReference, type Reference } from "../oci/reference.ts";
import type { BlobResponse } from "../registry/client.ts";
import type { Cache } from "./cache.ts";
import type { BlobResult, DownloadTee } from "./download.ts";

/** Options of `fetchBlob` and `fetchBlobByDigest`. */
export interface FetchBlobOptions {
  /** Where the verified blob goes when the cache cannot take it. */
  fallbackPath?: string;
  /** Gets every byte the cache's writer takes, from the first (see `DownloadOptions.tee`). */
  tee?: DownloadTee;
  /** Sees every byte as it arrives, before the final verification; a promise it returns holds the download back. */
  onChunk?: (chunk: Uint8Array) => void | Promise<void>;
  /** The answer to a `GET` of the whole blob the caller already sent (see `DownloadOptions.firstResponse`). */
  firstResponse?: BlobResponse;
  /** What the blob is, for progress: its files' names (`kernel`), or `config`. */
  files?: readonly string[];
}

/**
 * A verified blob: the cached one when its size is right (and, with
 * `verify`, its digest), else downloaded while hashed and counted, then
 * renamed into `blobs/`.
 *
 * @throws {IntegrityError} when the downloaded bytes are not the blob.
 * @throws {RegistryError} when the registry fails or the connection drops.
 * @example A cached blob is a hit; offline, one the cache lacks is not found
 * ```ts
 * import assert from "node:assert";
 * import { Cache } from "./cache.ts";
 * import { fetchBlob } from "./blobs.ts";
 * import { digestOf } from "../oci/digest.ts";
 * import { NotFoundError } from "../errors.ts";
 * import { parseReference } from "../oci/reference.ts";
 * const cache = new Cache({ dir: "/tmp/ocicache-example", offline: true });
 * cache.store.init();
 * const ref = parseReference("127.0.0.1:5000/unikraft/nginx:1.25");
 * const bytes = new TextEncoder().encode("a unikernel");
 * const kernel = { mediaType: "application/vnd.unikraft.kernel.v1", digest: digestOf(bytes), size: bytes.length };
 * await assert.rejects(fetchBlob(cache, ref, kernel), NotFoundError);
 * cache.store.putBytes(kernel, bytes);
 * assert.equal((await fetchBlob(cache, ref, kernel)).hit, true);
 * ```
 */
export async function fetchBlob(
  cache: Cache,
  ref: Reference,
  descriptor: Descriptor,
  options: FetchBlobOptions = {},
): Promise<BlobResult> {
  const { digest } = descriptor;
  const cached = cachedCopy(cache, digest, descriptor.size);
  if (cached !== undefined || cache.options.offline)
    await options.firstResponse?.response.body?.cancel().catch(() => {});
  if (cached !== undefined) return { path: cached.path, hit: true, cached: true };
  if (cache.options.offline) throw new NotFoundError(`Cannot fetch blob "${digest}" offline: it is not in the cache`);
  const { downloadBlob } = await import("./download.ts");
  const image = formatReference(ref);
  let result: BlobResult;
  try {
    result = await downloadBlob({
      store: cache.store,
      client: await cache.client(),
      ref,
      descriptor,
      writable: cache.writable,
      ...options,
      onProgress: (received, resumed) =>
        cache.options.onProgress?.({
          digest,
          received,
          total: descriptor.size,
          image,
          ...(options.files !== undefined && { files: options.files }),
          ...(resumed && { resumed }),
        }),
      onWait: (pid) => cache.options.onWait?.({ digest, ...(pid !== undefined && { pid }) }),
      onCacheFailed: (error) => cache.noteUnwritable(error),
      idleTimeoutMs: cache.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      lockTimeoutMs: cache.options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
      ...(cache.options.lowSpeed !== undefined && { lowSpeed: cache.options.lowSpeed }),
    });
  } catch (error) {
    if (error instanceof IntegrityError) cache.options.onEvent?.({ type: "verification-failure" });
    throw error;
  }
  cache.options.onEvent?.(
    result.hit ? { type: "hit", bytes: descriptor.size } : { type: "fetched", bytes: descriptor.size },
  );
  return result;
}

/**
 * A blob named by its digest alone, with no descriptor to give its size:
 * the cached copy (re-hashed with `verify`: nothing else can tell a
 * truncated one), else the registry's, its size from a HEAD.
 *
 * @throws {NotFoundError} when neither the cache nor the registry has it.
 */
export async function fetchBlobByDigest(
  cache: Cache,
  ref: Reference,
  digest: Digest,
  options: FetchBlobOptions = {},
): Promise<BlobResult & { size: number }> {
  const cached = cachedCopy(cache, digest, undefined);
  if (cached !== undefined) return { path: cached.path, hit: true, cached: true, size: cached.size };
  if (cache.options.offline) throw new NotFoundError(`Cannot fetch blob "${digest}" offline: it is not in the cache`);
  const size = await (await cache.client()).headBlob(ref, digest);
  return { ...(await fetchBlob(cache, ref, { mediaType: "application/octet-stream", digest, size }, options)), size };
}

/** The cached copy when it passes its checks (touched, as used now), else `undefined` (a failing copy is dropped). */
function cachedCopy(
  cache: Cache,
  digest: Digest,
  size: number | undefined,
): { path: string; size: number } | undefined {
  const stat = cache.store.stat(digest);
  if (stat === undefined) return undefined;
  const path = cache.store.blobPath(digest);
  let problem: string | undefined;
  if (size !== undefined && stat.size !== size) problem = `it has ${stat.size} bytes, expected ${size}`;
  else if (cache.options.verify && hashFile(path).digest !== digest) problem = "its content does not match its digest";
  if (problem !== undefined) {
    cache.warn(`Dropping cached blob "${digest}": ${problem}; fetching it again`);
    try {
      cache.store.remove(digest);
    } catch (error) {
      cache.noteUnwritable(error);
    }
    return undefined;
  }
  cache.store.touch(digest);
  cache.options.onEvent?.({ type: "hit", bytes: stat.size });
  return { path, size: stat.size };
}
