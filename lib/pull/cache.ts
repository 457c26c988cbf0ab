/**
 * Pull-through: answer from the cache when it can, fetch and verify from the
 * registry when it must, and keep the bytes flowing to the caller when the
 * cache cannot be written (docs/ARCHITECTURE.md, rules 1–4).
 *
 * @module
 */

import { IntegrityError, NotFoundError, RegistryError } from "../errors.ts";
import { type Digest, digestOf } from "../oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../oci/limits.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { CHECKED_ANNOTATION, REF_NAME_ANNOTATION } from "../oci/names.ts";
import { formatReference, type Reference } from "../oci/reference.ts";
import type { RegistryClient, RegistryClientOptions } from "../registry/client.ts";
import { describeFsError, probeWritable, type WriteResult } from "../store/files.ts";
import { type IndexEntry, updateIndex, upsertEntry } from "../store/index-file.ts";
import { lookupReference } from "../store/refs.ts";
import { Store } from "../store/store.ts";
import { formatBytes } from "../units.ts";
import type { BlobResult } from "./download.ts";
import { MANIFEST_MEMORY_BYTES, ManifestMemory } from "./manifest-memory.ts";

/** Distinct warnings remembered, so that each is said once; past it the memory starts over. */
const MAX_WARNINGS_REMEMBERED = 1024;

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
  /** Called when a blob is waited for: another process (`pid`) is downloading it. */
  onWait?: (wait: { digest: Digest; pid?: number }) => void;
  /** Told of each blob hit, download and verification failure (for metrics). */
  onEvent?: (event: CacheEvent) => void;
  /** A registry that sends nothing for this long fails a download. @default 30000 */
  idleTimeoutMs?: number;
  /** How long to wait for another process downloading the same blob before fetching it too. @default 600000 */
  lockTimeoutMs?: number;
  /** A blob slower than this fails its download. @default undefined (no limit) */
  lowSpeed?: { bytesPerSecond: number; windowMs: number };
}

/**
 * What happened to a blob: served from the cache, fetched (with its bytes), or refused by verification; or to a
 * tag: answered from its last known digest because its registry could not be asked.
 */
export type CacheEvent =
  | { type: "hit"; bytes: number }
  | { type: "fetched"; bytes: number }
  | { type: "verification-failure" }
  | { type: "stale-tag"; name: string };

/** Progress of one blob download. */
export interface BlobProgress {
  digest: Digest;
  received: number;
  total: number;
  /** The image it is fetched for, as the pull names it; said once, before its first byte. */
  image?: string;
  /** The names of the files it holds (`kernel`, `initrd`): said with `image`. */
  files?: readonly string[];
  /** Whether the `received` bytes were kept from an earlier download: it resumes there. */
  resumed?: boolean;
}

/** What a reference resolved to. */
export interface Resolved {
  /** The normalised reference, the name in `index.json`. */
  name: string;
  digest: Digest;
  /** The index entry known before this pull, if any. */
  entry?: IndexEntry;
  /** What earlier pulls of that entry came to, by choice, as the `refs/` memo remembers (see `readPullMemo`). */
  images: Record<string, unknown>;
  /** Whether the registry confirmed the digest during this pull. */
  checked: boolean;
}

export type { BlobResult };

/**
 * One cache directory and the registries behind it.
 * @example Open a cache directory
 * ```ts
 * import assert from "node:assert";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { Cache, NotFoundError, parseReference } from "ocicache";
 * const cache = new Cache({ dir: mkdtempSync(join(tmpdir(), "ocicache-")), offline: true });
 * assert.equal(cache.writable, true);
 * // Offline, a tag the cache has never seen cannot be resolved.
 * const error = await cache.resolve(parseReference("127.0.0.1:5000/unikraft/nginx:1.25")).catch((e) => e);
 * assert(error instanceof NotFoundError);
 * ```
 */
export class Cache {
  readonly store: Store;
  readonly options: CacheOptions;
  /** Why the cache cannot be written, once known. */
  #unwritable: string | undefined;
  #warned = new Set<string>();
  #client: RegistryClient | undefined;
  #warnedOffline = false;
  #manifests = new ManifestMemory(MANIFEST_MEMORY_BYTES);

  constructor(options: CacheOptions) {
    this.options = options;
    this.store = new Store(options.dir);
    this.#unwritable = this.store.init();
  }

  /**
   * The registry client, made on first use. Loaded then: a hit needs no
   * registry, and not loading the client keeps a cache hit fast.
   */
  async client(): Promise<RegistryClient> {
    if (this.#client === undefined) {
      const { RegistryClient } = await import("../registry/client.ts");
      this.#client = new RegistryClient({
        ...this.options.registry,
        onMirrorFailure: (mirror, registry, reason) =>
          this.warn(
            `Cannot use the mirror "${mirror}" for "${registry}" (${reason}); using the next host for the rest of ` +
              `this pull`,
          ),
      });
    }
    return this.#client;
  }

  /** Whether the cache can take new content. */
  get writable(): boolean {
    return this.#unwritable === undefined;
  }

  /** Report a warning once. */
  warn(message: string): void {
    if (this.#warned.has(message)) return;
    // A server's cache lives long and warns of whatever its clients ask for: the memory of what was said is bounded.
    if (this.#warned.size >= MAX_WARNINGS_REMEMBERED) this.#warned.clear();
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
    const known = lookupReference(this.store, name, { verify: this.options.verify });
    if (ref.digest !== undefined) return { name, digest: ref.digest, ...known, checked: false };
    const { entry } = known;
    if (entry !== undefined && !this.options.refresh) {
      const checkedAt = Date.parse(entry.annotations[CHECKED_ANNOTATION] ?? "");
      const fresh = Date.now() - checkedAt < (this.options.freshForMs ?? 0);
      if (fresh) return { name, digest: entry.digest, ...known, checked: false };
      if (this.options.offline) {
        // Once per cache (a process): asked to stay offline, every tag is its last known digest.
        if (!this.#warnedOffline)
          this.warn(`Offline: tags are their last known digests ("${name}" is ${entry.digest})`);
        this.#warnedOffline = true;
        return { name, digest: entry.digest, ...known, checked: false };
      }
      try {
        const head = await (await this.client()).headManifest(ref, ref.tag!);
        return { name, digest: head.digest, ...known, checked: true };
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        this.options.onEvent?.({ type: "stale-tag", name });
        this.warn(
          `Cannot check "${name}" with "${ref.registry}" (${error.message}); using the last known digest ` +
            `${entry.digest}`,
        );
        return { name, digest: entry.digest, ...known, checked: false };
      }
    }
    if (this.options.offline) throw new NotFoundError(`Cannot resolve "${name}" offline: it is not in the cache`);
    let fetched: Awaited<ReturnType<RegistryClient["getManifest"]>>;
    try {
      fetched = await (await this.client()).getManifest(ref, ref.tag!);
    } catch (error) {
      // Only where the cache has a digest to fall back on (asked to --refresh) is --offline worth a word.
      if (entry === undefined || !(error instanceof RegistryError) || error.kind !== "unreachable") throw error;
      throw new RegistryError(`${error.message} (--offline uses the cached ${entry.digest})`, {
        kind: error.kind,
        cause: error,
      });
    }
    this.#manifests.set(fetched.digest, fetched.bytes);
    return { name, digest: fetched.digest, ...known, checked: true };
  }

  /**
   * The bytes of a manifest, from memory, the cache (re-hashed: it is small)
   * or the registry, and stored when fetched.
   *
   * @throws {IntegrityError} when its size differs from `expectedSize`.
   */
  async manifestBytes(
    ref: Reference,
    digest: Digest,
    expectedSize?: number,
  ): Promise<{ bytes: Uint8Array; hit: boolean }> {
    let bytes = this.#manifests.get(digest);
    let hit = false;
    if (bytes === undefined) {
      bytes = this.store.readBytes(digest, MAX_MANIFEST_BYTES);
      hit = bytes !== undefined;
      if (bytes !== undefined && digestOf(bytes) !== digest) {
        this.warn(`Dropping cached manifest "${digest}": its content does not match its digest`);
        this.store.remove(digest);
        bytes = undefined;
        hit = false;
      }
    }
    if (bytes === undefined) {
      if (this.options.offline)
        throw new NotFoundError(`Cannot fetch manifest "${digest}" offline: it is not in the cache`);
      bytes = (await (await this.client()).getManifest(ref, digest)).bytes;
    }
    if (expectedSize !== undefined && bytes.byteLength !== expectedSize) {
      throw new IntegrityError(
        `Cannot use manifest "${digest}": it has ${bytes.byteLength} bytes, its descriptor says ${expectedSize}`,
      );
    }
    if (!hit && this.writable) this.#noteWrite(this.store.putBytes({ digest, size: bytes.byteLength }, bytes));
    this.#manifests.set(digest, bytes);
    return { bytes, hit };
  }

  /**
   * Record a reference in `index.json` with its digest, the time the registry
   * confirmed it, and extra annotations; a cache that cannot be written is
   * left as it is, with a warning.
   */
  async record(
    resolved: Resolved,
    descriptor: Omit<Descriptor, "annotations">,
    annotations: Record<string, string>,
  ): Promise<void> {
    // The time of the check is worth an index rewrite only when something reads it (--fresh-for) or
    // the entry changes anyway: a warm pull of an unchanged tag then writes nothing.
    const stamp =
      resolved.checked &&
      (resolved.entry?.digest !== descriptor.digest ||
        (this.options.freshForMs ?? 0) > 0 ||
        resolved.entry.annotations[CHECKED_ANNOTATION] === undefined);
    const entry: IndexEntry = {
      mediaType: descriptor.mediaType,
      digest: descriptor.digest,
      size: descriptor.size,
      annotations: {
        ...(resolved.entry?.digest === descriptor.digest ? resolved.entry.annotations : {}),
        ...annotations,
        [REF_NAME_ANNOTATION]: resolved.name,
        ...(stamp && { [CHECKED_ANNOTATION]: new Date().toISOString() }),
      },
    };
    if (resolved.entry !== undefined && JSON.stringify(resolved.entry) === JSON.stringify(entry)) return;
    if (!this.writable) return;
    try {
      await updateIndex(this.store.root, (entries) => upsertEntry(entries, entry));
    } catch (error) {
      this.noteUnwritable(error);
    }
  }

  #noteWrite(result: WriteResult): void {
    if (result.status === "failed") this.noteUnwritable(result.error);
    if (result.status === "skipped") this.noteUnwritable(new Error(result.reason));
  }

  /**
   * Why the cache cannot take `bytes` more now (a file cannot be made in it, or its file system has less free), or
   * `undefined` when it can: asked before a download whose bytes have nowhere else to go.
   */
  roomFor(bytes: number): string | undefined {
    if (!this.writable) return this.#unwritable;
    const unwritable = probeWritable(this.store.tmpDir);
    if (unwritable !== undefined) {
      this.noteUnwritable(unwritable);
      return this.#unwritable;
    }
    const free = this.store.freeBytes();
    if (free !== undefined && free < bytes)
      return `its file system is full: ${formatBytes(free)} free, ${formatBytes(bytes)} needed`;
    return undefined;
  }

  /** The cache failed a write: say so once, and write nothing more (`undefined`: it was already known). */
  noteUnwritable(error: unknown): void {
    if (error !== undefined) this.#unwritable = describeFsError(error);
    this.warn(`Cannot write to the cache "${this.store.root}": ${this.#unwritable}; continuing without caching`);
  }
}
