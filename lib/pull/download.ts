/**
 * Download one blob into the cache: single-flight across processes (a lock
 * in `tmp/` naming its owner), resumed with `Range` from the partial file a
 * failed try left, hashed and counted by the writer as it streams, and
 * carried over into a fallback file when the cache fails midway (docs/ARCHITECTURE.md, rule 2).
 *
 * @module
 */

import { lstatSync } from "node:fs";
import { IntegrityError, StoreError } from "../errors.ts";
import { digestHex, type Expected, Verifier } from "../oci/digest.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { readRange } from "../oci/read.ts";
import type { Reference } from "../oci/reference.ts";
import { type BodyLimits, readBody } from "../registry/body.ts";
import type { BlobResponse, RegistryClient } from "../registry/client.ts";
import { describeFsError, lexists } from "../store/files.ts";
import { isStale, type Lock, lockOwner, tryLock } from "../store/lock.ts";
import { downloadLockPath, partialPath, tempBeside, tempPath } from "../store/paths.ts";
import type { Store } from "../store/store.ts";
import { BlobWriter } from "../store/writer.ts";

/** Where a verified blob is, and whether this call fetched it. */
export interface BlobResult {
  /** The cached blob, the fallback file, or `undefined` when neither could be written. */
  path: string | undefined;
  /** Whether no byte of it came from a registry in this call. */
  hit: boolean;
  /** Whether `path` is in the cache's `blobs/`. */
  cached: boolean;
}

/** What a download needs. */
export interface DownloadOptions {
  store: Store;
  client: RegistryClient;
  ref: Reference;
  descriptor: Descriptor;
  /** Whether the cache can take the blob. */
  writable: boolean;
  /** Where the verified blob goes when the cache cannot take it. */
  fallbackPath?: string;
  /**
   * Sees every byte as it arrives from the registry, before the final
   * verification; a promise it returns holds the download back (a slow reader).
   */
  onChunk?: (chunk: Uint8Array) => void | Promise<void>;
  /** Gets every byte the cache's writer takes, from the first (a copy of the blob into an output directory). */
  tee?: DownloadTee;
  /** Bytes received so far (resumed bytes included) of the expected total; `resumed` when a download resumes there. */
  onProgress?: (received: number, resumed?: boolean) => void;
  /** Told once when another process is downloading the blob and this one waits for it (its pid, when known). */
  onWait?: (pid: number | undefined) => void;
  /** The cache failed (`undefined`: it was already known to be unwritable). */
  onCacheFailed: (error: unknown) => void;
  /**
   * A registry that sends nothing for this long fails the download; a partial file that does not grow for this long is
   * not waited for.
   */
  idleTimeoutMs: number;
  /** A registry slower than this fails the download (curl's `--speed-limit`, `--speed-time`). */
  lowSpeed?: BodyLimits["lowSpeed"];
  /** How long to wait for another process downloading the same blob. */
  lockTimeoutMs: number;
  /**
   * An answer to `GET` of the whole blob the caller already has (the mirror learns the size from it): used
   * instead of a request of its own when the download starts from the first byte, else cancelled.
   */
  firstResponse?: BlobResponse;
}

/** A second home for a blob's bytes while they download: told when the download starts over or cannot be whole. */
export interface DownloadTee {
  write(chunk: Uint8Array): void;
  restart(): void;
  abandon(): void;
}

/**
 * Download a blob, or wait for the process already downloading it: while
 * its partial file grows, and until its lock is abandoned (then taken over).
 *
 * @throws {IntegrityError} when the bytes are not the blob (its partial file is removed).
 * @throws {RegistryError} when the registry fails, stalls, trickles or drops (the partial file is kept for resume).
 */
export async function downloadBlob(options: DownloadOptions): Promise<BlobResult> {
  const first = { response: options.firstResponse };
  try {
    return await download(options, first);
  } finally {
    await first.response?.response.body?.cancel().catch(() => {});
  }
}

/** A response given by the caller, taken at most once. */
interface FirstResponse {
  response: BlobResponse | undefined;
}

async function download(options: DownloadOptions, first: FirstResponse): Promise<BlobResult> {
  const { store, descriptor } = options;
  if (!options.writable) {
    options.onCacheFailed(undefined);
    return stream(options, undefined, first);
  }
  const lockPath = downloadLockPath(store.root, descriptor.digest);
  const deadline = Date.now() + options.lockTimeoutMs;
  let waited = false;
  for (;;) {
    let lock: Lock | undefined;
    try {
      lock = tryLock(lockPath);
    } catch (error) {
      options.onCacheFailed(error);
      return stream(options, undefined, first);
    }
    if (lock !== undefined) {
      try {
        if (store.stat(descriptor.digest)?.size === descriptor.size)
          return { path: store.blobPath(descriptor.digest), hit: true, cached: true };
        return await stream(options, "partial", first);
      } finally {
        lock.release();
      }
    }
    if (!waited) options.onWait?.(lockOwner(lockPath));
    waited = true;
    const outcome = await waitForOwner(options, lockPath, deadline);
    if (outcome === "committed") {
      store.touch(descriptor.digest);
      return { path: store.blobPath(descriptor.digest), hit: true, cached: true };
    }
    // An owner that makes no progress is not waited for: this process fetches the blob into a file of its own.
    if (outcome !== "released") return stream(options, "temp", first);
  }
}

/**
 * Wait while another process downloads the blob: until it is committed, the
 * lock is released or abandoned, the partial file stops growing for the idle
 * timeout, or the lock timeout passes.
 */
async function waitForOwner(
  options: DownloadOptions,
  lockPath: string,
  deadline: number,
): Promise<"committed" | "released" | "stalled" | "timeout"> {
  const { store, descriptor } = options;
  const partial = partialPath(store.root, descriptor.digest);
  let size = -1;
  let grewAt = Date.now();
  for (;;) {
    if (store.stat(descriptor.digest)?.size === descriptor.size) return "committed";
    if (!lexists(lockPath) || isStale(lockPath)) return "released";
    const now = sizeOf(partial);
    if (now !== size) {
      size = now;
      grewAt = Date.now();
    } else if (Date.now() - grewAt > options.idleTimeoutMs) {
      return "stalled";
    }
    if (Date.now() >= deadline) return "timeout";
    await Bun.sleep(25);
  }
}

/**
 * Stream the blob from the registry into the cache (the resumable partial
 * file, or a temp file of this process's own) and on into `blobs/`; without
 * a target, into the fallback only. Each byte goes to one writer, which
 * hashes it; with no file at all, a verifier alone checks the stream.
 */
async function stream(
  options: DownloadOptions,
  target: "partial" | "temp" | undefined,
  first: FirstResponse,
): Promise<BlobResult> {
  const { descriptor, store } = options;
  const expected: Expected = { digest: descriptor.digest, size: descriptor.size };
  const what = `blob "${descriptor.digest}"`;
  let writer = target === undefined ? undefined : await openWriter(options, target, what);
  let fallback = writer === undefined ? openFallback(options, what) : undefined;
  const verifier = new Verifier(expected, what);
  const received = () => writer?.written ?? fallback?.written ?? verifier.received;
  const restart = () => {
    writer?.truncate();
    fallback?.truncate();
    verifier.reset();
    options.tee?.restart();
  };
  const verify = () => {
    if (writer !== undefined) writer.verify(expected);
    else if (fallback !== undefined) fallback.verify(expected);
    else verifier.finish();
  };
  const take = (chunk: Uint8Array) => {
    options.tee?.write(chunk);
    if (writer === undefined) {
      if (fallback !== undefined) fallback.write(chunk);
      else verifier.update(chunk);
      return;
    }
    const before = writer.written;
    try {
      writer.write(chunk);
    } catch (error) {
      if (error instanceof IntegrityError) throw error;
      options.onCacheFailed(error);
      const rest = chunk.subarray(writer.written - before);
      if (options.fallbackPath === undefined && options.onChunk === undefined) {
        // Nowhere else to put the bytes, and nobody to hand them to: the download is of no use.
        writer.abort();
        writer = undefined;
        throw new StoreError(`Cannot keep ${what} in the cache "${store.root}": ${describeFsError(error)}`, {
          cause: error,
        });
      }
      fallback = moveToFallback(writer, options, rest, what, verifier);
      writer = undefined;
    }
  };
  const limits: BodyLimits = {
    idleTimeoutMs: options.idleTimeoutMs,
    ...(options.lowSpeed !== undefined && { lowSpeed: options.lowSpeed }),
  };
  try {
    let offset = received();
    if (offset > 0) {
      // Resumed: the tee never saw the bytes of the partial file.
      options.tee?.abandon();
      options.onProgress?.(offset, true);
    }
    while (offset < descriptor.size) {
      const given = offset === 0 ? first.response : undefined;
      first.response = undefined;
      const { response, endpoint } = given ?? (await options.client.getBlob(options.ref, descriptor.digest, offset));
      // A host that ignores Range sends the whole blob: start over, unless a consumer already has the
      // partial file's bytes, in which case they are skipped (the final digest check still decides).
      let skip = 0;
      if (offset > 0 && !resumes(response, offset, descriptor.size)) {
        if (options.onChunk !== undefined) {
          skip = offset;
        } else {
          restart();
          offset = 0;
        }
      }
      try {
        for await (let chunk of readBody(response, limits, `${what} from "${options.ref.registry}"`)) {
          if (skip > 0) {
            const n = Math.min(skip, chunk.byteLength);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.byteLength === 0) continue;
          }
          take(chunk);
          await options.onChunk?.(chunk);
          options.onProgress?.(received());
        }
        if (endpoint.mirror) verify();
        break;
      } catch (error) {
        // A mirror that sent wrong bytes is skipped and the next host asked, unless a consumer already saw them.
        if (!(error instanceof IntegrityError) || !endpoint.mirror || options.onChunk !== undefined) throw error;
        options.client.markFailed(endpoint, options.ref.registry, error.message);
        restart();
        offset = 0;
      }
    }
    verify();
  } catch (error) {
    if (writer !== undefined && target === "partial" && !(error instanceof IntegrityError)) writer.close();
    else writer?.abort();
    fallback?.abort();
    throw error;
  }
  if (writer !== undefined) {
    const result = writer.commit(store.blobPath(descriptor.digest), expected);
    if (result.status === "committed") return { path: result.path, hit: false, cached: true };
    options.onCacheFailed(result.status === "failed" ? result.error : undefined);
    fallback = moveToFallback(writer, options, new Uint8Array(), what, verifier);
  }
  if (fallback === undefined) return { path: undefined, hit: false, cached: false };
  const result = fallback.commit(options.fallbackPath!, expected, { mode: 0o644, durable: false });
  if (result.status === "committed") return { path: result.path, hit: false, cached: false };
  fallback.abort();
  throw result.status === "failed" ? result.error : new TypeError(result.reason);
}

/**
 * The cache's writer: the resumable partial file (what it holds is hashed
 * again and handed to the consumer first), or a temp file of this process.
 * A cache that cannot take it is reported, and the download goes on without.
 */
async function openWriter(
  options: DownloadOptions,
  target: "partial" | "temp",
  what: string,
): Promise<BlobWriter | undefined> {
  const { store, descriptor, onChunk } = options;
  const limits = { limit: descriptor.size, what };
  let consumerError: unknown;
  try {
    if (target === "temp") return BlobWriter.create(tempPath(store.root, digestHex(descriptor.digest)), limits);
    return await BlobWriter.resume(partialPath(store.root, descriptor.digest), {
      ...limits,
      ...(onChunk !== undefined && {
        onExisting: async (chunk: Uint8Array) => {
          try {
            await onChunk(chunk);
          } catch (error) {
            consumerError = error;
            throw error;
          }
        },
      }),
    });
  } catch (error) {
    if (consumerError !== undefined) throw consumerError;
    options.onCacheFailed(error);
    return undefined;
  }
}

function openFallback(options: DownloadOptions, what: string): BlobWriter | undefined {
  const path = options.fallbackPath;
  if (path === undefined) return undefined;
  return BlobWriter.create(tempBeside(path), { limit: options.descriptor.size, what });
}

/** A 206 whose `Content-Range` starts where the partial file ends (RFC 9110, section 14.4). */
function resumes(response: Response, offset: number, size: number): boolean {
  if (response.status !== 206) return false;
  const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
  return range !== null && Number(range[1]) === offset && Number(range[2]) === size - 1;
}

/**
 * The cache failed mid-stream: carry what it has over to the fallback file, then go on there; with no fallback
 * file (a consumer takes the bytes as they come), over to `verifier`, which checks the rest of the stream.
 */
function moveToFallback(
  writer: BlobWriter,
  options: DownloadOptions,
  rest: Uint8Array,
  what: string,
  verifier: Verifier,
): BlobWriter | undefined {
  try {
    const fallback = openFallback(options, what);
    const into = (chunk: Uint8Array) => (fallback === undefined ? verifier.update(chunk) : fallback.write(chunk));
    readRange(writer.path, 0, writer.written, into);
    into(rest);
    return fallback;
  } finally {
    writer.abort();
  }
}

/** The size of a file that may vanish at any moment (renamed into `blobs/`): 0 when it is not there. */
function sizeOf(path: string): number {
  try {
    return lstatSync(path).size;
  } catch {
    return 0;
  }
}
