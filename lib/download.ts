/**
 * Download one blob into the cache: single-flight across processes (a lock
 * in `tmp/` naming its owner), resumed with `Range` from the partial file a
 * failed try left, hashed and counted as it streams, and carried over into a
 * fallback file when the cache fails midway (DESIGN.md, rule 2).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import { digestHex, Verifier } from "./digest.ts";
import { IntegrityError, OcicacheError, RegistryError } from "./errors.ts";
import type { Descriptor } from "./image.ts";
import { tryLock, type Lock } from "./lock.ts";
import type { Reference } from "./reference.ts";
import type { RegistryClient } from "./registry.ts";
import type { Store } from "./store.ts";
import { BlobWriter, copyRange, fileChunks, tempName } from "./writer.ts";

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
  /** Bytes received so far (resumed bytes included) of the expected total. */
  onProgress?: (received: number) => void;
  /** The cache failed (`undefined`: it was already known to be unwritable). */
  onCacheFailed: (error: unknown) => void;
  /** A registry that sends nothing for this long fails the download. */
  idleTimeoutMs: number;
  /** How long to wait for another process downloading the same blob. */
  lockTimeoutMs: number;
}

/**
 * Download a blob, or wait for the process already downloading it.
 *
 * @throws {IntegrityError} when the bytes are not the blob (its partial file is removed).
 * @throws {RegistryError} when the registry fails, stalls or drops (the partial file is kept for resume).
 */
export async function downloadBlob(options: DownloadOptions): Promise<BlobResult> {
  const { store, descriptor } = options;
  if (!options.writable) {
    options.onCacheFailed(undefined);
    return stream(options, undefined);
  }
  const lockPath = join(store.tmpDir, `${digestHex(descriptor.digest)}.lock`);
  const deadline = Date.now() + options.lockTimeoutMs;
  for (;;) {
    let lock: Lock | undefined;
    try {
      lock = tryLock(lockPath);
    } catch (error) {
      options.onCacheFailed(error);
      return stream(options, undefined);
    }
    if (lock !== undefined) {
      try {
        if (store.stat(descriptor.digest)?.size === descriptor.size) return { path: store.blobPath(descriptor.digest), hit: true, cached: true };
        return await stream(options, partialPath(store, descriptor));
      } finally {
        lock.release();
      }
    }
    while (existsSync(lockPath) && Date.now() < deadline && store.stat(descriptor.digest) === undefined) await Bun.sleep(25);
    if (store.stat(descriptor.digest)?.size === descriptor.size) {
      store.touch(descriptor.digest);
      return { path: store.blobPath(descriptor.digest), hit: true, cached: true };
    }
    if (Date.now() >= deadline) return stream(options, join(store.tmpDir, tempName(digestHex(descriptor.digest))));
  }
}

/** The partial download of a blob, owned by whoever holds its lock. */
export function partialPath(store: Store, descriptor: Descriptor): string {
  return join(store.tmpDir, `${digestHex(descriptor.digest)}.partial`);
}

/**
 * Stream the blob from the registry into `tmpPath` (resumed when it holds a
 * prefix) and on into `blobs/`; without `tmpPath`, into the fallback only.
 */
async function stream(options: DownloadOptions, tmpPath: string | undefined): Promise<BlobResult> {
  const { descriptor } = options;
  const verifier = new Verifier(descriptor, `blob "${descriptor.digest}"`);
  let writer = tmpPath === undefined ? undefined : openWriter(options, tmpPath);
  let fallback = writer === undefined ? openFallback(options) : undefined;
  const resumable = tmpPath !== undefined && tmpPath.endsWith(".partial");
  try {
    let offset = writer === undefined ? 0 : await rehashPrefix(writer, verifier, options.onChunk);
    for (;;) {
      if (offset >= descriptor.size) break;
      const { response, endpoint } = await options.client.getBlob(options.ref, descriptor.digest, offset);
      // A host that ignores Range sends the whole blob: start over, unless a consumer already has the
      // partial file's bytes, in which case they are skipped (the final digest check still decides).
      let skip = 0;
      if (offset > 0 && !resumes(response, offset, descriptor.size)) {
        if (options.onChunk !== undefined) {
          skip = offset;
        } else {
          writer!.truncate();
          verifier.reset();
          offset = 0;
        }
      }
      try {
        for await (let chunk of readBody(response, options, verifier)) {
          if (skip > 0) {
            const n = Math.min(skip, chunk.byteLength);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.byteLength === 0) continue;
          }
          const before = verifier.received;
          verifier.update(chunk);
          await options.onChunk?.(chunk);
          if (writer !== undefined) {
            try {
              writer.write(chunk);
            } catch (error) {
              options.onCacheFailed(error);
              fallback = moveToFallback(writer, options, chunk.subarray(writer.written - before));
              writer = undefined;
            }
          } else {
            fallback?.write(chunk);
          }
          options.onProgress?.(verifier.received);
        }
        if (endpoint.mirror) verifier.finish();
        break;
      } catch (error) {
        // A mirror that sent wrong bytes is skipped and the next host asked, unless a consumer already saw them.
        if (!(error instanceof IntegrityError) || !endpoint.mirror || options.onChunk !== undefined) throw error;
        options.client.markFailed(endpoint, options.ref.registry, error.message);
        writer?.truncate();
        fallback?.truncate();
        verifier.reset();
        offset = 0;
      }
    }
    verifier.finish();
  } catch (error) {
    if (writer !== undefined && resumable && !(error instanceof IntegrityError)) writer.close();
    else writer?.abort();
    fallback?.abort();
    throw error;
  }
  if (writer !== undefined) {
    const result = writer.commit();
    if (result.status === "committed") return { path: result.path, hit: false, cached: true };
    options.onCacheFailed(result.status === "failed" ? result.error : undefined);
    fallback = moveToFallback(writer, options, new Uint8Array());
  }
  const result = fallback?.commit();
  if (result?.status === "committed") return { path: result.path, hit: false, cached: false };
  fallback?.abort();
  if (result?.status === "failed") throw result.error;
  return { path: undefined, hit: false, cached: false };
}

function openWriter(options: DownloadOptions, tmpPath: string): BlobWriter | undefined {
  try {
    return new BlobWriter(tmpPath, options.store.blobPath(options.descriptor.digest), options.descriptor.size, 0o444, { resumable: tmpPath.endsWith(".partial") });
  } catch (error) {
    options.onCacheFailed(error);
    return undefined;
  }
}

function openFallback(options: DownloadOptions): BlobWriter | undefined {
  const path = options.fallbackPath;
  if (path === undefined) return undefined;
  return new BlobWriter(`${path}.${process.pid}.part`, path, options.descriptor.size, 0o644);
}

/**
 * Feed what a partial file holds into the verifier (the final check covers
 * every byte) and to the consumer, who sees the blob from its first byte.
 */
async function rehashPrefix(writer: BlobWriter, verifier: Verifier, onChunk: DownloadOptions["onChunk"]): Promise<number> {
  if (writer.written === 0) return 0;
  if (writer.written > verifier.expected.size) {
    writer.truncate();
    return 0;
  }
  for (const chunk of fileChunks(writer.tmpPath, writer.written)) {
    verifier.update(chunk);
    await onChunk?.(chunk);
  }
  return writer.written;
}

/** A 206 whose `Content-Range` starts where the partial file ends (RFC 9110, section 14.4). */
function resumes(response: Response, offset: number, size: number): boolean {
  if (response.status !== 206) return false;
  const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
  return range !== null && Number(range[1]) === offset && Number(range[2]) === size - 1;
}

/** The cache failed mid-stream: carry what it has over to the fallback file, then go on there. */
function moveToFallback(writer: BlobWriter, options: DownloadOptions, rest: Uint8Array): BlobWriter | undefined {
  try {
    const fallback = openFallback(options);
    if (fallback !== undefined) {
      copyRange(writer.tmpPath, 0, writer.written, (chunk) => fallback.write(chunk));
      fallback.write(rest);
    }
    return fallback;
  } finally {
    writer.abort();
  }
}

/** The body's chunks; a stall past the idle timeout or a dropped connection is a registry error. */
async function* readBody(response: Response, options: DownloadOptions, verifier: Verifier): AsyncGenerator<Uint8Array> {
  if (response.body === null) return;
  const reader = response.body.getReader();
  const { descriptor, ref } = options;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RegistryError(
          `Cannot download blob "${descriptor.digest}" from "${ref.registry}": nothing received for ${options.idleTimeoutMs} ms after ${verifier.received} of ${descriptor.size} bytes`,
        )), options.idleTimeoutMs);
      });
      let next: Awaited<ReturnType<typeof reader.read>>;
      try {
        next = await Promise.race([reader.read(), stalled]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) return;
      yield next.value;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    if (error instanceof OcicacheError) throw error;
    throw new RegistryError(
      `Cannot download blob "${descriptor.digest}" from "${ref.registry}": the connection dropped after ${verifier.received} of ${descriptor.size} bytes`,
      { cause: error },
    );
  }
}
