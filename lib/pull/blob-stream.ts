/**
 * A blob being downloaded as a response body, verified as it goes out: every
 * chunk is hashed and counted, and the last one is held back until the whole
 * blob's digest was checked, so a client never receives a complete body that
 * is wrong. The bytes come from the partial download as it grows (whoever
 * writes it, this process or another), at the client's own pace: memory per
 * client is at most two chunks, whatever the blob's size.
 *
 * @module
 */

import { closeSync } from "node:fs";
import { IntegrityError, StoreError } from "../errors.ts";
import { type Digest, type Expected, Verifier } from "../oci/digest.ts";
import { openRegular, readAt } from "../oci/read.ts";
import { partialPath } from "../store/paths.ts";
import type { Store } from "../store/store.ts";
import type { BlobResult } from "./download.ts";

/** Where the chunks of a body come from; `null` is the end. */
export interface ChunkSource {
  next(): Promise<Uint8Array | null>;
  close(): void;
}

/** What a verified stream reports as it goes. */
export interface StreamHooks {
  /** The bytes were not the blob; told before the stream errors. */
  onMismatch?: (error: IntegrityError) => void;
  /** Every byte was the blob's: told before the last chunk goes out. */
  onVerified?: () => void;
  /** The stream is over: read to its end, failed, or cancelled by the client. Told once. */
  onEnd?: () => void;
  /** The bytes it holds in memory changed by `delta` (a chunk held back or queued for the client). */
  onBuffered?: (delta: number) => void;
}

/**
 * A stream of `source` that errors instead of ending when the bytes are not
 * `expected`. It holds at most two chunks: the one held back, and the one the
 * client has not read yet.
 *
 * @example Bytes that are what they claim go through
 * ```ts
 * import assert from "node:assert";
 * import { digestOf } from "../oci/digest.ts";
 * import { verifiedStream } from "./blob-stream.ts";
 * const bytes = new TextEncoder().encode("hello");
 * let sent = false;
 * const source = { next: async () => (sent ? null : ((sent = true), bytes)), close() {} };
 * const text = await new Response(verifiedStream(source, { digest: digestOf(bytes), size: 5 })).text();
 * assert.equal(text, "hello");
 * ```
 */
export function verifiedStream(
  source: ChunkSource,
  expected: Expected,
  hooks: StreamHooks = {},
): ReadableStream<Uint8Array> {
  const verifier = new Verifier(expected, `blob "${expected.digest}"`);
  let held: Uint8Array | undefined;
  let queued = 0;
  let ended = false;
  const buffered = (delta: number) => {
    if (delta !== 0) hooks.onBuffered?.(delta);
  };
  const end = () => {
    if (ended) return;
    ended = true;
    source.close();
    buffered(-(queued + (held?.byteLength ?? 0)));
    queued = 0;
    held = undefined;
    hooks.onEnd?.();
  };
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, error: unknown) => {
    if (error instanceof IntegrityError) hooks.onMismatch?.(error);
    end();
    controller.error(error);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        // Asked for more: the chunk queued last time has gone to the client.
        buffered(-queued);
        queued = 0;
        for (;;) {
          let chunk: Uint8Array | null;
          try {
            chunk = await source.next();
            if (chunk === null) verifier.finish();
            else verifier.update(chunk);
          } catch (error) {
            fail(controller, error);
            return;
          }
          if (chunk === null) {
            hooks.onVerified?.();
            if (held !== undefined) controller.enqueue(held);
            end();
            controller.close();
            return;
          }
          const previous = held;
          held = chunk;
          buffered(chunk.byteLength);
          if (previous !== undefined) {
            controller.enqueue(previous);
            queued = previous.byteLength;
            return;
          }
        }
      },
      cancel() {
        end();
      },
    },
    { highWaterMark: 0 },
  );
}

/** Bytes read at once for a client, unless the caller says otherwise. */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;

/**
 * A blob being downloaded: its partial file as it grows, then (once the
 * download settled) the committed blob from where the partial left off.
 * `done` is this process's download or its wait for another process's.
 */
export function growingSource(
  store: Store,
  digest: Digest,
  size: number,
  done: Promise<BlobResult>,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): ChunkSource {
  let outcome: { result: BlobResult } | { error: unknown } | undefined;
  done.then(
    (result) => (outcome = { result }),
    (error) => (outcome = { error }),
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
            const { path, cached } = outcome.result;
            if (path === undefined || !cached)
              throw new StoreError(`Cannot serve blob "${digest}": the cache cannot be written`);
            fd = openRegular(path);
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
        // At the end of what was written so far: go on from the committed blob once the download settled.
        if (outcome !== undefined) close();
        else await Bun.sleep(FOLLOW_POLL_MS);
      }
    },
    close,
  };
}

/** How often a follower looks for more bytes of a partial file. */
const FOLLOW_POLL_MS = 10;
/** The next chunk from `offset` (a buffer of its own: the stream holds one back), or `null` at the file's end. */
function readChunk(fd: number, offset: number, size: number, chunkBytes: number): Uint8Array | null {
  const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, size - offset));
  const n = readAt(fd, buffer, 0, buffer.length, offset);
  return n === 0 ? null : buffer.subarray(0, n);
}
