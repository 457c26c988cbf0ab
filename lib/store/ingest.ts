/**
 * How a blob enters the store, as containerd's content store has it: an
 * ingest is opened for a digest (`Writer(ref)`), written, and committed
 * (`Commit(size, expected)`: verified, fsynced, read-only, renamed into
 * `blobs/`) or aborted; others follow an ingest in progress (`ReaderAt`)
 * without knowing where it is written.
 *
 * One ingest of a blob at a time across processes: its lock in `tmp/` names
 * the owner, who writes the resumable partial file and resumes it after a
 * failure. Whoever else needs the blob waits (told once, with the owner's
 * pid), takes over a lock whose owner died, or, when the owner makes no
 * progress, writes a file of its own (docs/ARCHITECTURE.md, the write protocol).
 *
 * @module
 */

import { closeSync, lstatSync } from "node:fs";
import { IntegrityError, StoreError } from "../errors.ts";
import { type Digest, digestHex } from "../oci/digest.ts";
import { openRegular, readAt, readRange } from "../oci/read.ts";
import { describeFsError, lexists } from "./files.ts";
import { isStale, type Lock, lockOwner, tryLock } from "./lock.ts";
import { downloadLockPath, partialPath, tempPath } from "./paths.ts";
import type { Store } from "./store.ts";
import { BlobWriter, type WriteExpectation, type WriteResult, WrittenFile } from "./writer.ts";

/** How an ingest of a known blob is opened. */
export interface IngestOptions {
  /** The blob's size: the ingest takes no byte past it. */
  size: number;
  /** What it is, for messages. */
  what: string;
  /** How long to wait for another process's ingest of the blob. */
  lockTimeoutMs: number;
  /** An owner whose partial file does not grow for this long is not waited for. */
  idleTimeoutMs: number;
  /** Told once when another process (its pid, when known) holds the ingest and this one waits. */
  onWait?: (pid: number | undefined) => void;
  /**
   * Handed the bytes a resumed partial file holds, before any new one (a consumer that must see every byte); an
   * error it throws is thrown by `ingest`.
   */
  onExisting?: (chunk: Uint8Array) => void | Promise<void>;
}

/** What opening an ingest came to: the blob is there, a writer for it, or a cache that cannot take it. */
export type IngestStart =
  | { kind: "cached"; path: string }
  | { kind: "ingest"; ingest: Ingest }
  | { kind: "unavailable"; error: unknown };

/**
 * One blob being written into the store: the resumable partial file under
 * the blob's lock, or a file of this process's own. `commit` puts it in
 * `blobs/`, `close` keeps a partial file to resume, `abort` removes it; each
 * releases the lock.
 */
export class Ingest extends WrittenFile {
  readonly #store: Store;
  readonly #lock: Lock | undefined;
  readonly #expected: WriteExpectation;
  /** The bytes it held when it was opened (a resumed partial file's). */
  readonly resumedAt: number;

  constructor(store: Store, writer: BlobWriter, lock: Lock | undefined, expected: WriteExpectation) {
    super(writer);
    this.#store = store;
    this.#lock = lock;
    this.#expected = expected;
    this.resumedAt = writer.written;
  }

  /** The digest of what is written so far. */
  digest(): Digest {
    return this.writer.digest();
  }

  /** Hand every byte written so far to `into` (the cache failed: they move elsewhere). */
  readBack(into: (chunk: Uint8Array) => void): void {
    readRange(this.writer.path, 0, this.writer.written, into);
  }

  /**
   * Verify, fsync, make read-only and rename into `blobs/` under its digest (an unnamed ingest's: what it hashed);
   * the lock goes with a commit. A result other than `committed` leaves the ingest open: `abort` it.
   */
  commit(): WriteResult {
    const digest = this.#expected.digest ?? this.writer.digest();
    const result = this.writer.commit(this.#store.blobPath(digest), this.#expected);
    if (result.status === "committed") this.#lock?.release();
    return result;
  }

  /** Stop, keeping a partial file for the next ingest to resume (a file of this process's own is removed). */
  close(): void {
    if (this.#lock === undefined) this.writer.abort();
    else this.writer.close();
    this.#lock?.release();
  }

  /** Stop and remove what was written. */
  abort(): void {
    this.writer.abort();
    this.#lock?.release();
  }
}

/**
 * Open the ingest of `digest`: `cached` when the blob is committed (now, or
 * by the process waited for), else a writer; `unavailable` when the cache
 * cannot take it (a lock or a file it cannot make).
 *
 * @throws what `onExisting` throws.
 * @example A blob written, committed and found again
 * ```ts
 * import assert from "node:assert";
 * import { digestOf } from "../oci/digest.ts";
 * import { ingest } from "./ingest.ts";
 * import { Store } from "./store.ts";
 * const store = new Store("/tmp/ocicache-example");
 * store.init();
 * const bytes = new TextEncoder().encode("a unikernel");
 * const options = { size: bytes.length, what: "kernel", lockTimeoutMs: 1000, idleTimeoutMs: 1000 };
 * const started = await ingest(store, digestOf(bytes), options);
 * assert.equal(started.kind, "ingest");
 * if (started.kind === "ingest") {
 *   started.ingest.write(bytes);
 *   assert.equal(started.ingest.commit().status, "committed");
 * }
 * assert.equal((await ingest(store, digestOf(bytes), options)).kind, "cached");
 * ```
 */
export async function ingest(store: Store, digest: Digest, options: IngestOptions): Promise<IngestStart> {
  const lockPath = downloadLockPath(store.root, digest);
  const deadline = Date.now() + options.lockTimeoutMs;
  let waited = false;
  for (;;) {
    let lock: Lock | undefined;
    try {
      lock = tryLock(lockPath);
    } catch (error) {
      return { kind: "unavailable", error };
    }
    if (lock !== undefined) {
      if (store.stat(digest)?.size === options.size) {
        lock.release();
        return { kind: "cached", path: store.blobPath(digest) };
      }
      return openPartial(store, digest, lock, options);
    }
    if (!waited) options.onWait?.(lockOwner(lockPath));
    waited = true;
    const outcome = await waitForOwner(store, digest, options, lockPath, deadline);
    if (outcome === "committed") {
      store.touch(digest);
      return { kind: "cached", path: store.blobPath(digest) };
    }
    // An owner that makes no progress is not waited for: this process writes a file of its own.
    if (outcome !== "released") return openOwn(store, { digest, size: options.size }, options.what);
  }
}

/**
 * A blob whose digest is known only once written (a file taken out of a layer): a file of this process's own,
 * committed under the digest it hashed.
 *
 * @throws {StoreError} when the cache cannot take it.
 */
export function ingestUnnamed(store: Store, options: { size: number; what: string }): Ingest {
  const started = openOwn(store, { size: options.size }, options.what);
  if (started.kind === "ingest") return started.ingest;
  throw new StoreError(`Cannot keep ${options.what} in the cache: ${describeFsError(started.error)}`, {
    cause: started.error,
  });
}

async function openPartial(store: Store, digest: Digest, lock: Lock, options: IngestOptions): Promise<IngestStart> {
  let consumerError: unknown;
  try {
    const writer = await BlobWriter.resume(partialPath(store.root, digest), {
      limit: options.size,
      what: options.what,
      ...(options.onExisting !== undefined && {
        onExisting: async (chunk: Uint8Array) => {
          try {
            await options.onExisting!(chunk);
          } catch (error) {
            consumerError = error;
            throw error;
          }
        },
      }),
    });
    return { kind: "ingest", ingest: new Ingest(store, writer, lock, { digest, size: options.size }) };
  } catch (error) {
    lock.release();
    if (consumerError !== undefined) throw consumerError;
    return { kind: "unavailable", error };
  }
}

function openOwn(store: Store, expected: WriteExpectation, what: string): Exclude<IngestStart, { kind: "cached" }> {
  const name = expected.digest === undefined ? "member" : digestHex(expected.digest);
  try {
    const writer = BlobWriter.create(tempPath(store.root, name), {
      ...(expected.size !== undefined && { limit: expected.size }),
      what,
    });
    return { kind: "ingest", ingest: new Ingest(store, writer, undefined, expected) };
  } catch (error) {
    return { kind: "unavailable", error };
  }
}

/**
 * Wait while another process writes the blob: until it is committed, the
 * lock is released or abandoned, the partial file stops growing for the idle
 * timeout, or the lock timeout passes.
 */
async function waitForOwner(
  store: Store,
  digest: Digest,
  options: IngestOptions,
  lockPath: string,
  deadline: number,
): Promise<"committed" | "released" | "stalled" | "timeout"> {
  const partial = partialPath(store.root, digest);
  let size = -1;
  let grewAt = Date.now();
  for (;;) {
    if (store.stat(digest)?.size === options.size) return "committed";
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

/** The size of a file that may vanish at any moment (renamed into `blobs/`): 0 when it is not there. */
function sizeOf(path: string): number {
  try {
    return lstatSync(path).size;
  } catch {
    return 0;
  }
}

/** Where the chunks of a body come from; `null` is the end. */
export interface ChunkSource {
  next(): Promise<Uint8Array | null>;
  close(): void;
}

/**
 * Follow the ingest of `digest` as it grows, whoever writes it (this process
 * or another), then the committed blob from where the ingest left off, once
 * `settled` (the ingest's outcome: the committed blob's path) resolves. A
 * chunk is a buffer of its own (a reader may hold it), at most `chunkBytes`.
 *
 * @throws {IntegrityError} (from `next`) when the committed blob is shorter than `size`.
 */
export function follow(
  store: Store,
  digest: Digest,
  size: number,
  settled: Promise<string>,
  chunkBytes: number,
): ChunkSource {
  let outcome: { path: string } | { error: unknown } | undefined;
  settled.then(
    (path) => {
      outcome = { path };
    },
    (error) => {
      outcome = { error };
    },
  );
  let fd: number | undefined;
  let final = false;
  let offset = 0;
  const close = () => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  return {
    async next() {
      for (;;) {
        if (offset >= size) return null;
        if (fd === undefined) {
          if (outcome !== undefined && "error" in outcome) throw outcome.error;
          if (outcome !== undefined) {
            fd = openRegular(outcome.path);
            final = true;
          } else {
            try {
              fd = openRegular(partialPath(store.root, digest));
            } catch {
              await Bun.sleep(FOLLOW_POLL_MS);
              continue;
            }
          }
        }
        const chunk = readChunk(fd, offset, size, chunkBytes);
        if (chunk !== null) {
          offset += chunk.byteLength;
          return chunk;
        }
        if (final) throw new IntegrityError(`Cannot serve blob "${digest}": it has ${offset} bytes, expected ${size}`);
        // At the end of what was written so far: go on from the committed blob once the ingest settled.
        if (outcome !== undefined) close();
        else await Bun.sleep(FOLLOW_POLL_MS);
      }
    },
    close,
  };
}

/** How often a follower looks for more bytes of an ingest. */
const FOLLOW_POLL_MS = 10;

/** The next chunk from `offset` (a buffer of its own: the reader holds one back), or `null` at the file's end. */
function readChunk(fd: number, offset: number, size: number, chunkBytes: number): Uint8Array | null {
  const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, size - offset));
  const n = readAt(fd, buffer, 0, buffer.length, offset);
  return n === 0 ? null : buffer.subarray(0, n);
}
