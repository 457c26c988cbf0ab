/**
 * Download one blob: the transport (requests, `Range` to resume, a host that
 * ignores it, mirrors that send wrong bytes, stalls and trickles) feeding one
 * sink chosen before the first byte: the store's ingest of the blob (single
 * flight across processes, resumed from the partial file a failed try left),
 * a fallback file outside the cache when the cache cannot take it, or a
 * verifier alone when the bytes go only to a consumer. A cache that fails
 * midway hands what it has on to the next of these (docs/ARCHITECTURE.md, rule 2).
 *
 * @module
 */

import { IntegrityError, StoreError } from "../errors.ts";
import { type Expected, Verifier } from "../oci/digest.ts";
import type { Descriptor } from "../oci/manifest.ts";
import type { Reference } from "../oci/reference.ts";
import { type BodyLimits, readBody } from "../registry/body.ts";
import type { BlobResponse, RegistryClient } from "../registry/client.ts";
import { describeFsError } from "../store/files.ts";
import { type Ingest, ingest } from "../store/ingest.ts";
import { OutputFile } from "../store/output.ts";
import type { Store } from "../store/store.ts";

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
    const sink = await chooseSink(options);
    return "take" in sink ? await transfer(options, sink, first) : sink;
  } finally {
    await first.response?.response.body?.cancel().catch(() => {});
  }
}

/** A response given by the caller, taken at most once. */
interface FirstResponse {
  response: BlobResponse | undefined;
}

/** Where the bytes of one download go. */
interface Sink {
  /** The bytes it holds already: where the download starts (a resumed partial file's). */
  readonly received: number;
  take(chunk: Uint8Array): void;
  /** The download starts over from the first byte. */
  restart(): void;
  /** @throws {IntegrityError} when what it holds is not the blob. */
  verify(): void;
  /** Put the verified blob where it goes. */
  finish(): BlobResult;
  /** The download failed with `error`. */
  fail(error: unknown): void;
}

/**
 * The sink of a download, chosen before the first byte: the store's ingest (or the blob itself, when it is there
 * by the time the ingest opens), else where the bytes go when the cache cannot take them.
 */
async function chooseSink(options: DownloadOptions): Promise<Sink | BlobResult> {
  const { store, descriptor } = options;
  if (!options.writable) {
    options.onCacheFailed(undefined);
    return uncachedSink(options);
  }
  const started = await ingest(store, descriptor.digest, {
    size: descriptor.size,
    what: what(options),
    lockTimeoutMs: options.lockTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
    ...(options.onWait !== undefined && { onWait: options.onWait }),
    ...(options.onChunk !== undefined && { onExisting: options.onChunk }),
  });
  if (started.kind === "cached") return { path: started.path, hit: true, cached: true };
  if (started.kind === "unavailable") {
    options.onCacheFailed(started.error);
    return uncachedSink(options);
  }
  return new CacheSink(started.ingest, options);
}

/** Without the cache: the fallback file when there is one, else a verifier of the bytes a consumer takes. */
function uncachedSink(options: DownloadOptions): Sink {
  return options.fallbackPath === undefined ? new VerifySink(options) : new FallbackSink(options);
}

function what(options: DownloadOptions): string {
  return `blob "${options.descriptor.digest}"`;
}

function expected(options: DownloadOptions): Expected {
  return { digest: options.descriptor.digest, size: options.descriptor.size };
}

/**
 * The store's ingest of the blob. When the cache fails midway (a write, or the commit), what it holds moves on to
 * the uncached sink and the download goes on there; with nowhere to move (no fallback file, no consumer), the
 * download is of no use and stops.
 */
class CacheSink implements Sink {
  #ingest: Ingest | undefined;
  #moved: Sink | undefined;
  readonly #options: DownloadOptions;

  constructor(ingest: Ingest, options: DownloadOptions) {
    this.#ingest = ingest;
    this.#options = options;
  }

  get received(): number {
    return this.#moved?.received ?? this.#ingest!.written;
  }

  take(chunk: Uint8Array): void {
    if (this.#moved !== undefined) {
      this.#moved.take(chunk);
      return;
    }
    const ingest = this.#ingest!;
    const before = ingest.written;
    try {
      ingest.write(chunk);
    } catch (error) {
      if (error instanceof IntegrityError) throw error;
      this.#options.onCacheFailed(error);
      if (this.#options.fallbackPath === undefined && this.#options.onChunk === undefined) {
        // Nowhere else to put the bytes, and nobody to hand them to.
        throw new StoreError(
          `Cannot keep ${what(this.#options)} in the cache "${this.#options.store.root}": ${describeFsError(error)}`,
          { cause: error },
        );
      }
      this.#moveOut(chunk.subarray(ingest.written - before));
    }
  }

  restart(): void {
    if (this.#moved !== undefined) this.#moved.restart();
    else this.#ingest!.truncate();
  }

  verify(): void {
    if (this.#moved !== undefined) this.#moved.verify();
    else this.#ingest!.verify(expected(this.#options));
  }

  finish(): BlobResult {
    if (this.#moved !== undefined) return this.#moved.finish();
    const result = this.#ingest!.commit();
    if (result.status === "committed") return { path: result.path, hit: false, cached: true };
    this.#options.onCacheFailed(result.status === "failed" ? result.error : undefined);
    return this.#moveOut(new Uint8Array()).finish();
  }

  fail(error: unknown): void {
    if (this.#moved !== undefined) {
      this.#moved.fail(error);
      return;
    }
    // A partial file whose bytes are wrong is of no use; one cut short by the registry is resumed next time.
    if (error instanceof IntegrityError) this.#ingest?.abort();
    else this.#ingest?.close();
  }

  /** Carry what the ingest holds, then `rest`, over to the uncached sink, and remove the ingest. */
  #moveOut(rest: Uint8Array): Sink {
    const ingest = this.#ingest!;
    this.#ingest = undefined;
    try {
      const next = uncachedSink(this.#options);
      ingest.readBack((chunk) => next.take(chunk));
      next.take(rest);
      this.#moved = next;
      return next;
    } finally {
      ingest.abort();
    }
  }
}

/** A file outside the cache, beside where the caller wants the blob (`-o DIR`). */
class FallbackSink implements Sink {
  readonly #file: OutputFile;
  readonly #options: DownloadOptions;

  constructor(options: DownloadOptions) {
    this.#options = options;
    this.#file = OutputFile.create(options.fallbackPath!, { limit: options.descriptor.size, what: what(options) });
  }

  get received(): number {
    return this.#file.written;
  }

  take(chunk: Uint8Array): void {
    this.#file.write(chunk);
  }

  restart(): void {
    this.#file.truncate();
  }

  verify(): void {
    this.#file.verify(expected(this.#options));
  }

  finish(): BlobResult {
    const result = this.#file.commit(this.#options.fallbackPath!, expected(this.#options));
    if (result.status === "committed") return { path: result.path, hit: false, cached: false };
    this.#file.abort();
    throw result.status === "failed" ? result.error : new TypeError(result.reason);
  }

  fail(): void {
    this.#file.abort();
  }
}

/** No file: the bytes go only to a consumer (`onChunk`), and this checks them. */
class VerifySink implements Sink {
  readonly #verifier: Verifier;

  constructor(options: DownloadOptions) {
    this.#verifier = new Verifier(expected(options), what(options));
  }

  get received(): number {
    return this.#verifier.received;
  }

  take(chunk: Uint8Array): void {
    this.#verifier.update(chunk);
  }

  restart(): void {
    this.#verifier.reset();
  }

  verify(): void {
    this.#verifier.finish();
  }

  finish(): BlobResult {
    return { path: undefined, hit: false, cached: false };
  }

  fail(): void {}
}

/**
 * The transport: request the blob (from where the sink's bytes end, with `Range`), feed every chunk to the tee and
 * the sink, then to the consumer. A host that ignores `Range` starts the blob over (or, when a consumer already has
 * the first bytes, has them skipped: the final digest check still decides); a mirror that sent wrong bytes is
 * skipped for the next host, unless a consumer already saw them.
 */
async function transfer(options: DownloadOptions, sink: Sink, first: FirstResponse): Promise<BlobResult> {
  const { descriptor } = options;
  const restart = () => {
    sink.restart();
    options.tee?.restart();
  };
  const limits: BodyLimits = {
    idleTimeoutMs: options.idleTimeoutMs,
    ...(options.lowSpeed !== undefined && { lowSpeed: options.lowSpeed }),
  };
  try {
    let offset = sink.received;
    if (offset > 0) {
      // Resumed: the tee never saw the bytes of the partial file.
      options.tee?.abandon();
      options.onProgress?.(offset, true);
    }
    while (offset < descriptor.size) {
      const given = offset === 0 ? first.response : undefined;
      first.response = undefined;
      const { response, endpoint } = given ?? (await options.client.getBlob(options.ref, descriptor.digest, offset));
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
        for await (const chunk of readBody(response, limits, `${what(options)} from "${options.ref.registry}"`)) {
          const fresh = skip > 0 ? chunk.subarray(Math.min(skip, chunk.byteLength)) : chunk;
          skip -= chunk.byteLength - fresh.byteLength;
          if (fresh.byteLength === 0) continue;
          options.tee?.write(fresh);
          sink.take(fresh);
          await options.onChunk?.(fresh);
          options.onProgress?.(sink.received);
        }
        if (endpoint.mirror) sink.verify();
        break;
      } catch (error) {
        if (!(error instanceof IntegrityError) || !endpoint.mirror || options.onChunk !== undefined) throw error;
        options.client.markFailed(endpoint, options.ref.registry, error.message);
        restart();
        offset = 0;
      }
    }
    sink.verify();
  } catch (error) {
    sink.fail(error);
    throw error;
  }
  return sink.finish();
}

/** A 206 whose `Content-Range` starts where the partial file ends (RFC 9110, section 14.4). */
function resumes(response: Response, offset: number, size: number): boolean {
  if (response.status !== 206) return false;
  const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
  return range !== null && Number(range[1]) === offset && Number(range[2]) === size - 1;
}
