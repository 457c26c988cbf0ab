/**
 * Pull-through: answer from the cache when it can, fetch and verify from the
 * registry when it must, and keep the bytes flowing to the caller when the
 * cache cannot be written (DESIGN.md, rules 1–4).
 *
 * @module
 */

import { closeSync, openSync, readSync } from "node:fs";
import { digestOf, hashFile, Verifier, type Digest } from "./digest.ts";
import { IntegrityError, NotFoundError, OcicacheError, RegistryError } from "./errors.ts";
import type { Descriptor } from "./image.ts";
import { CHECKED_ANNOTATION, findEntry, readIndex, updateIndex, upsertEntry, type IndexEntry } from "./layout.ts";
import { formatReference, type Reference } from "./reference.ts";
import { RegistryClient, type RegistryClientOptions } from "./registry.ts";
import { BlobWriter, describeFsError, Store, type WriteResult } from "./store.ts";

/** How a cache behaves. */
export interface CacheOptions {
  /** The cache directory. */
  dir: string;
  /** Never contact a registry; tags use their last known digest. @default false */
  offline?: boolean;
  /** A tag checked this recently (milliseconds) is not checked again. @default 0 */
  freshForMs?: number;
  /** Ignore the known digest of a tag and ask the registry. @default false */
  refresh?: boolean;
  /** Re-hash cached blobs on a hit. @default false */
  verify?: boolean;
  /** Options of the registry client. */
  registry?: RegistryClientOptions;
  /** Called once per distinct warning. */
  onWarning?: (message: string) => void;
  /** Called as blob bytes arrive from a registry. */
  onProgress?: (progress: BlobProgress) => void;
}

/** Progress of one blob download. */
export interface BlobProgress {
  digest: Digest;
  received: number;
  total: number;
}

/** What a reference resolved to. */
export interface Resolved {
  /** The normalised reference, the name in `index.json`. */
  name: string;
  digest: Digest;
  /** The index entry known before this pull, if any. */
  entry?: IndexEntry;
  /** Whether the registry confirmed the digest during this pull. */
  checked: boolean;
}

/** Where a verified blob is, and whether the cache already had it. */
export interface BlobResult {
  /** The cached blob, the fallback file, or `undefined` when neither could be written. */
  path: string | undefined;
  hit: boolean;
  /** Whether `path` is in the cache's `blobs/`. */
  cached: boolean;
}

/** Options of `Cache.fetchBlob`. */
export interface FetchBlobOptions {
  /** Where the verified blob goes when the cache cannot take it. */
  fallbackPath?: string;
  /** Sees every byte as it arrives, before the final verification. */
  onChunk?: (chunk: Uint8Array) => void;
}

/**
 * One cache directory and the registries behind it.
 *
 * @example
 * ```ts
 * import { Cache } from "./cache.ts";
 * import { parseReference } from "./reference.ts";
 * const cache = new Cache({ dir: "/tmp/ocicache-example" });
 * const resolved = await cache.resolve(parseReference("127.0.0.1:5000/unikraft/nginx:1.25")).catch(() => undefined);
 * ```
 */
export class Cache {
  readonly store: Store;
  readonly options: CacheOptions;
  /** Why the cache cannot be written, once known. */
  #unwritable: string | undefined;
  #warned = new Set<string>();
  #client: RegistryClient | undefined;
  #manifests = new Map<Digest, Uint8Array>();

  constructor(options: CacheOptions) {
    this.options = options;
    this.store = new Store(options.dir);
    this.#unwritable = this.store.init();
  }

  /** The registry client, made on first use. */
  get client(): RegistryClient {
    this.#client ??= new RegistryClient(this.options.registry);
    return this.#client;
  }

  /** Whether the cache can take new content. */
  get writable(): boolean {
    return this.#unwritable === undefined;
  }

  /** Report a warning once. */
  warn(message: string): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    this.options.onWarning?.(message);
  }

  /**
   * The digest a reference names now. A digest is itself; a tag is the
   * cached digest while fresh or offline, else what a HEAD (or, on a miss,
   * the GET of the manifest) says. An unreachable registry falls back to the
   * cached digest with a warning.
   *
   * @throws {NotFoundError} when offline and the tag was never pulled, or the registry lacks it.
   * @throws {RegistryError} when the registry cannot be reached and nothing is cached.
   */
  async resolve(ref: Reference): Promise<Resolved> {
    const name = formatReference(ref);
    if (ref.digest !== undefined) return { name, digest: ref.digest, ...this.#known(name), checked: false };
    const { entry } = this.#known(name);
    if (entry !== undefined && !this.options.refresh) {
      const checkedAt = Date.parse(entry.annotations[CHECKED_ANNOTATION] ?? "");
      const fresh = Date.now() - checkedAt < (this.options.freshForMs ?? 0);
      if (fresh) return { name, digest: entry.digest, entry, checked: false };
      if (this.options.offline) {
        this.warn(`Using the last known digest of "${name}" (offline): ${entry.digest}`);
        return { name, digest: entry.digest, entry, checked: false };
      }
      try {
        const head = await this.client.headManifest(ref, ref.tag!);
        return { name, digest: head.digest, entry, checked: true };
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        this.warn(`Cannot check "${name}" with "${ref.registry}" (${error.message}); using the last known digest ${entry.digest}`);
        return { name, digest: entry.digest, entry, checked: false };
      }
    }
    if (this.options.offline) throw new NotFoundError(`Cannot resolve "${name}" offline: it is not in the cache`);
    const fetched = await this.client.getManifest(ref, ref.tag!);
    this.#manifests.set(fetched.digest, fetched.bytes);
    return { name, digest: fetched.digest, ...(entry !== undefined && { entry }), checked: true };
  }

  /**
   * The bytes of a manifest, from memory, the cache (re-hashed: it is small)
   * or the registry, and stored when fetched.
   *
   * @throws {IntegrityError} when its size differs from `expectedSize`.
   */
  async manifestBytes(ref: Reference, digest: Digest, expectedSize?: number): Promise<{ bytes: Uint8Array; hit: boolean }> {
    let bytes = this.#manifests.get(digest);
    let hit = false;
    if (bytes === undefined) {
      bytes = this.store.readBytes(digest);
      hit = bytes !== undefined;
      if (bytes !== undefined && digestOf(bytes) !== digest) {
        this.warn(`Dropping cached manifest "${digest}": its content does not match its digest`);
        this.store.remove(digest);
        bytes = undefined;
        hit = false;
      }
    }
    if (bytes === undefined) {
      if (this.options.offline) throw new NotFoundError(`Cannot fetch manifest "${digest}" offline: it is not in the cache`);
      bytes = (await this.client.getManifest(ref, digest)).bytes;
    }
    if (expectedSize !== undefined && bytes.byteLength !== expectedSize) {
      throw new IntegrityError(`Cannot use manifest "${digest}": it has ${bytes.byteLength} bytes, its descriptor says ${expectedSize}`);
    }
    if (!hit && this.writable) this.#noteWrite(this.store.putBytes({ digest, size: bytes.byteLength }, bytes));
    this.#manifests.set(digest, bytes);
    return { bytes, hit };
  }

  /**
   * A verified blob: the cached one when its size is right (and, with
   * `verify`, its digest), else downloaded while hashed and counted, then
   * renamed into `blobs/`. A cached blob that fails its check is dropped
   * and fetched again.
   *
   * @throws {IntegrityError} when the downloaded bytes are not the blob.
   * @throws {RegistryError} when the registry fails or the connection drops.
   */
  async fetchBlob(ref: Reference, descriptor: Descriptor, options: FetchBlobOptions = {}): Promise<BlobResult> {
    const { digest } = descriptor;
    const stat = this.store.stat(digest);
    if (stat !== undefined) {
      const path = this.store.blobPath(digest);
      if (stat.size !== descriptor.size) {
        this.warn(`Dropping cached blob "${digest}": it has ${stat.size} bytes, expected ${descriptor.size}; fetching it again`);
        this.#drop(digest);
      } else if (this.options.verify && hashFile(path).digest !== digest) {
        this.warn(`Dropping cached blob "${digest}": its content does not match its digest; fetching it again`);
        this.#drop(digest);
      } else {
        this.store.touch(digest);
        return { path, hit: true, cached: true };
      }
    }
    if (this.options.offline) throw new NotFoundError(`Cannot fetch blob "${digest}" offline: it is not in the cache`);
    return this.#download(ref, descriptor, options);
  }

  /**
   * Record a reference in `index.json` with its digest, the time the registry
   * confirmed it, and extra annotations; a cache that cannot be written is
   * left as it is, with a warning.
   */
  async record(resolved: Resolved, descriptor: Omit<Descriptor, "annotations">, annotations: Record<string, string>): Promise<void> {
    const entry: IndexEntry = {
      mediaType: descriptor.mediaType,
      digest: descriptor.digest,
      size: descriptor.size,
      annotations: {
        ...(resolved.entry?.digest === descriptor.digest ? resolved.entry.annotations : {}),
        ...annotations,
        "org.opencontainers.image.ref.name": resolved.name,
        ...(resolved.checked && { [CHECKED_ANNOTATION]: new Date().toISOString() }),
      },
    };
    if (resolved.entry !== undefined && JSON.stringify(resolved.entry) === JSON.stringify(entry)) return;
    if (!this.writable) return;
    try {
      await updateIndex(this.store.root, (entries) => upsertEntry(entries, entry));
    } catch (error) {
      this.#cacheFailed(error);
    }
  }

  #known(name: string): { entry?: IndexEntry } {
    const entry = findEntry(readIndex(this.store.root), name);
    return entry === undefined ? {} : { entry };
  }

  #drop(digest: Digest): void {
    try {
      this.store.remove(digest);
    } catch (error) {
      this.#cacheFailed(error);
    }
  }

  async #download(ref: Reference, descriptor: Descriptor, options: FetchBlobOptions): Promise<BlobResult> {
    const response = await this.client.getBlob(ref, descriptor.digest);
    const verifier = new Verifier(descriptor, `blob "${descriptor.digest}"`);
    let writer = this.#openCacheWriter(descriptor);
    let fallback = writer === undefined ? this.#openFallback(options.fallbackPath, descriptor) : undefined;
    try {
      for await (const chunk of readBody(response, ref, descriptor, verifier)) {
        const before = verifier.received;
        verifier.update(chunk);
        options.onChunk?.(chunk);
        if (writer !== undefined) {
          try {
            writer.write(chunk);
          } catch (error) {
            this.#cacheFailed(error);
            fallback = this.#moveToFallback(writer, options.fallbackPath, descriptor, chunk.subarray(writer.written - before));
            writer = undefined;
          }
        } else {
          fallback?.write(chunk);
        }
        this.options.onProgress?.({ digest: descriptor.digest, received: verifier.received, total: descriptor.size });
      }
      verifier.finish();
    } catch (error) {
      writer?.abort();
      fallback?.abort();
      throw error;
    }
    if (writer !== undefined) {
      const result = writer.commit();
      if (result.status === "committed") return { path: result.path, hit: false, cached: true };
      this.#noteWrite(result);
      fallback = this.#moveToFallback(writer, options.fallbackPath, descriptor, new Uint8Array());
    }
    const result = fallback?.commit();
    if (result?.status === "committed") return { path: result.path, hit: false, cached: false };
    fallback?.abort();
    if (result?.status === "failed") throw result.error;
    return { path: undefined, hit: false, cached: false };
  }

  #openCacheWriter(descriptor: Descriptor): BlobWriter | undefined {
    if (!this.writable) {
      this.#cacheFailed(undefined);
      return undefined;
    }
    try {
      return this.store.createWriter(descriptor);
    } catch (error) {
      this.#cacheFailed(error);
      return undefined;
    }
  }

  #openFallback(path: string | undefined, descriptor: Descriptor): BlobWriter | undefined {
    if (path === undefined) return undefined;
    return new BlobWriter(`${path}.${process.pid}.part`, path, descriptor.size, 0o644);
  }

  /** The cache failed mid-stream: carry what it has over to the fallback file, then go on there. */
  #moveToFallback(writer: BlobWriter, path: string | undefined, descriptor: Descriptor, rest: Uint8Array): BlobWriter | undefined {
    try {
      const fallback = this.#openFallback(path, descriptor);
      if (fallback !== undefined) {
        copyPrefix(writer.tmpPath, writer.written, fallback);
        fallback.write(rest);
      }
      return fallback;
    } finally {
      writer.abort();
    }
  }

  #noteWrite(result: WriteResult): void {
    if (result.status === "failed") this.#cacheFailed(result.error);
    if (result.status === "skipped") this.#cacheFailed(new Error(result.reason));
  }

  #cacheFailed(error: unknown): void {
    if (error !== undefined) this.#unwritable = describeFsError(error);
    this.warn(`Cannot write to the cache "${this.store.root}": ${this.#unwritable}; continuing without caching`);
  }
}

/** The body's chunks, with a dropped connection turned into a registry error. */
async function* readBody(response: Response, ref: Reference, descriptor: Descriptor, verifier: Verifier): AsyncGenerator<Uint8Array> {
  if (response.body === null) return;
  try {
    for await (const chunk of response.body) yield chunk;
  } catch (error) {
    if (error instanceof OcicacheError) throw error;
    throw new RegistryError(
      `Cannot download blob "${descriptor.digest}" from "${ref.registry}": the connection dropped after ${verifier.received} of ${descriptor.size} bytes`,
      { cause: error },
    );
  }
}

/** Copy the first `length` bytes of a file into a writer. */
function copyPrefix(path: string, length: number, writer: BlobWriter): void {
  const fd = openSync(path, "r");
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  try {
    for (let copied = 0; copied < length;) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - copied), copied);
      if (n === 0) break;
      writer.write(buffer.subarray(0, n));
      copied += n;
    }
  } finally {
    closeSync(fd);
  }
}
