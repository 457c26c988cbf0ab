/**
 * A blob being downloaded as a response body, verified as it goes out: every
 * chunk is hashed and counted, and the last one is held back until the whole
 * blob's digest was checked, so a client never receives a complete body that
 * is wrong. The bytes come from the store's ingest as it grows (`follow`:
 * whoever writes it, this process or another), at the client's own pace:
 * memory per client is at most two chunks, whatever the blob's size.
 *
 * @module
 */

import { IntegrityError, StoreError } from "../errors.ts";
import { type Digest, type Expected, Verifier } from "../oci/digest.ts";
import { type ChunkSource, follow } from "../store/ingest.ts";
import type { Store } from "../store/store.ts";
import type { BlobResult } from "./download.ts";

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
 * import { verifiedBody } from "./blob-stream.ts";
 * const bytes = new TextEncoder().encode("hello");
 * let sent = false;
 * const source = { next: async () => (sent ? null : ((sent = true), bytes)), close() {} };
 * const text = await new Response(verifiedBody(source, { digest: digestOf(bytes), size: 5 })).text();
 * assert.equal(text, "hello");
 * ```
 */
export function verifiedBody(
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
 * The body of a blob being downloaded (`done`: this process's download, or its wait for another's), verified as it
 * goes out: the store's ingest as it grows, then the committed blob.
 */
export function downloadBody(
  store: Store,
  expected: { digest: Digest; size: number },
  done: Promise<BlobResult>,
  hooks: StreamHooks,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): ReadableStream<Uint8Array> {
  const committed = done.then(({ path, cached }) => {
    if (path === undefined || !cached)
      throw new StoreError(`Cannot serve blob "${expected.digest}": the cache cannot be written`);
    return path;
  });
  return verifiedBody(follow(store, expected.digest, expected.size, committed, chunkBytes), expected, hooks);
}
