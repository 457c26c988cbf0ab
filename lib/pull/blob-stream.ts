/**
 * A blob's bytes as a response body, verified as they go out: every chunk is
 * hashed and counted, and the last one is held back until the whole blob's
 * digest was checked, so a client never receives a complete body that is
 * wrong. The bytes come from a cached file, or from a partial download as it
 * grows (whoever writes it, this process or another), at the client's own
 * pace: memory per client is one chunk, whatever the blob's size.
 *
 * @module
 */

import { closeSync, readSync } from "node:fs";
import { Verifier, type Digest, type Expected } from "../oci/digest.ts";
import type { BlobResult } from "./download.ts";
import { IntegrityError, StoreError } from "../errors.ts";
import { partialPath } from "../store/paths.ts";
import type { Store } from "../store/store.ts";
import { openRegular } from "../store/files.ts";

/** Where the chunks of a body come from; `null` is the end. */
export interface ChunkSource {
  next(): Promise<Uint8Array | null>;
  close(): void;
}

/**
 * A stream of `source` that errors instead of ending when the bytes are not
 * `expected`; `onMismatch` is told first.
 *
 * @example
 * ```ts
 * import { digestOf } from "../oci/digest.ts";
 * import { verifiedStream } from "./blob-stream.ts";
 * const bytes = new TextEncoder().encode("hello");
 * let sent = false;
 * const source = { next: async () => (sent ? null : ((sent = true), bytes)), close() {} };
 * const text = await new Response(verifiedStream(source, { digest: digestOf(bytes), size: 5 }, () => {})).text();
 * console.log(text); // hello
 * ```
 */
export function verifiedStream(
  source: ChunkSource,
  expected: Expected,
  onMismatch: (error: IntegrityError) => void,
): ReadableStream<Uint8Array> {
  const verifier = new Verifier(expected, `blob "${expected.digest}"`);
  let held: Uint8Array | undefined;
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, error: unknown) => {
    source.close();
    if (error instanceof IntegrityError) onMismatch(error);
    controller.error(error);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
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
            source.close();
            if (held !== undefined) controller.enqueue(held);
            controller.close();
            return;
          }
          const previous = held;
          held = chunk;
          if (previous !== undefined) {
            controller.enqueue(previous);
            return;
          }
        }
      },
      cancel() {
        source.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** A cached blob file, read from its start up to `size` bytes. */
export function fileSource(path: string, size: number): ChunkSource {
  let fd: number | undefined;
  let offset = 0;
  return {
    async next() {
      fd ??= openRegular(path);
      if (offset >= size) return null;
      const chunk = readChunk(fd, offset, size);
      if (chunk === null) throw new IntegrityError(`Cannot serve "${path}": it has ${offset} bytes, expected ${size}`);
      offset += chunk.byteLength;
      return chunk;
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

/**
 * A blob being downloaded: its partial file as it grows, then (once the
 * download settled) the committed blob from where the partial left off.
 * `done` is this process's download or its wait for another process's.
 */
export function growingSource(store: Store, digest: Digest, size: number, done: Promise<BlobResult>): ChunkSource {
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
        const chunk = readChunk(fd, offset, size);
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
/** Bytes read at once for a client. */
const CHUNK_BYTES = 256 * 1024;

/** The next chunk from `offset` (a buffer of its own: the stream holds one back), or `null` at the file's end. */
function readChunk(fd: number, offset: number, size: number): Uint8Array | null {
  const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, size - offset));
  const n = readSync(fd, buffer, 0, buffer.length, offset);
  return n === 0 ? null : buffer.subarray(0, n);
}
