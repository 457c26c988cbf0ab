/**
 * The mirror's misses: one upstream request and one download per missing
 * blob, whoever asks; each client reads the growing partial file at its own
 * pace, verified as it goes.
 *
 * @module
 */

import { RegistryError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { MAX_BLOB_BYTES } from "../oci/limits.ts";
import type { Reference } from "../oci/reference.ts";
import type { BlobResult, Cache } from "../pull/cache.ts";
import { pullDescribedBlob, pulledBody, type StreamHooks } from "../pull/pull.ts";
import type { BlobResponse } from "../registry/client.ts";
import { API_HEADER } from "./answers.ts";
import type { MirrorDeps } from "./mirror-deps.ts";
import type { Slots } from "./slots.ts";

/** Bytes queued for one mirror client before its download waits, when the cache cannot be written. */
const MIRROR_QUEUE_BYTES = 4 * 1024 * 1024;

/**
 * A missing blob: one download into the cache's partial file at the
 * upstream's pace, and each client reading that file as it grows at its own
 * pace, verified as it goes (a mismatch cuts every client's response).
 */
export async function streamMiss(
  deps: MirrorDeps,
  downloads: Downloads,
  ref: Reference & { digest: Digest },
  headers: Record<string, string>,
): Promise<Response> {
  // Nothing is awaited between looking the download up and registering it: concurrent requests share one.
  const client = await deps.cache.client();
  let download = downloads.byDigest.get(ref.digest);
  if (download === undefined) {
    const { metrics } = deps;
    let sized: (size: number) => void = () => {};
    let unsized: (error: unknown) => void = () => {};
    const size = new Promise<number>((resolve, reject) => {
      sized = resolve;
      unsized = reject;
    });
    // With no download slot free, a HEAD answers the size at once, so that the client's headers do not wait.
    const queued = downloads.slots.active >= downloads.slots.limit;
    if (queued) {
      client.headBlob(ref, ref.digest).then(
        (n) => sized(n),
        (error) => unsized(error),
      );
    }
    metrics.downloadsQueued++;
    const done = downloads.slots.run(async () => {
      metrics.downloadsQueued--;
      metrics.downloadsInFlight++;
      try {
        if (queued) {
          const descriptor = { mediaType: "application/octet-stream", digest: ref.digest, size: await size };
          return await pullDescribedBlob(deps.cache, ref, descriptor);
        }
        // One request upstream: the GET that starts the download also gives the size for the client.
        const first = await sizedGet(deps.cache, ref).catch((error) => {
          unsized(error);
          throw error;
        });
        sized(first.size);
        const descriptor = { mediaType: "application/octet-stream", digest: ref.digest, size: first.size };
        return await pullDescribedBlob(deps.cache, ref, descriptor, { firstResponse: first.sent });
      } finally {
        metrics.downloadsInFlight--;
      }
    });
    download = { size, done };
    downloads.byDigest.set(ref.digest, download);
    const forget = () => downloads.byDigest.delete(ref.digest);
    done.then(forget, forget);
  }
  const size = await download.size;
  const expected = { digest: ref.digest, size };
  const body = await pulledBody(deps.cache, expected, download.done, streamHooks(deps), deps.limits.chunkBytes);
  return new Response(body, { status: 200, headers: { ...headers, "Content-Length": String(size) } });
}

/**
 * `GET` a whole blob from upstream, and its size from the answer's
 * `Content-Length`; an answer without one (sent in chunks) costs a `HEAD`.
 */
async function sizedGet(
  cache: Cache,
  ref: Reference & { digest: Digest },
): Promise<{ sent: BlobResponse; size: number }> {
  const client = await cache.client();
  const sent = await client.getBlob(ref, ref.digest);
  const declared = sent.response.headers.get("content-length");
  const size = declared === null || !/^\d+$/.test(declared) ? await client.headBlob(ref, ref.digest) : Number(declared);
  if (sent.response.status !== 200 || size > MAX_BLOB_BYTES) {
    await sent.response.body?.cancel().catch(() => {});
    throw new RegistryError(
      `Cannot fetch blob "${ref.digest}" from "${ref.registry}": it answered ${sent.response.status}`,
      {
        status: sent.response.status,
      },
    );
  }
  return { sent, size };
}

/**
 * A missing blob when the cache cannot be written: its bytes go to the client
 * as they arrive, hashed; the download waits while the client's queue is
 * full, so a slow client costs time, never memory.
 */
export async function streamUncached(deps: MirrorDeps, ref: Reference & { digest: Digest }): Promise<Response> {
  const { sent, size } = await sizedGet(deps.cache, ref);
  const descriptor = { mediaType: "application/octet-stream", digest: ref.digest, size };
  let ready: (() => void) | undefined;
  let gone = false;
  const body = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        pullDescribedBlob(deps.cache, ref, descriptor, {
          firstResponse: sent,
          onChunk: async (chunk) => {
            if (gone) return;
            controller.enqueue(chunk);
            if ((controller.desiredSize ?? 1) <= 0) await new Promise<void>((resolve) => (ready = resolve));
          },
        }).then(
          () => {
            if (!gone) controller.close();
          },
          (error) => {
            if (!gone) controller.error(error);
          },
        );
      },
      pull() {
        ready?.();
        ready = undefined;
      },
      cancel() {
        gone = true;
        ready?.();
        ready = undefined;
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: MIRROR_QUEUE_BYTES }),
  );
  return new Response(body, {
    status: 200,
    headers: {
      ...API_HEADER,
      "Content-Type": "application/octet-stream",
      "Content-Length": String(size),
      "Docker-Content-Digest": ref.digest,
    },
  });
}

/** The downloads of missing blobs: one per digest, at most `maxConcurrentDownloads` at once. */
export interface Downloads {
  /** Each blob's size (known once its download's first answer came) and the download itself. */
  byDigest: Map<Digest, { size: Promise<number>; done: Promise<BlobResult> }>;
  slots: Slots;
}

/** A blob response counts against `maxConnections` until it ends, and its chunks in memory against the gauge. */
function streamHooks(deps: MirrorDeps): StreamHooks {
  const { metrics } = deps;
  metrics.blobStreams++;
  return {
    onEnd: () => {
      metrics.blobStreams--;
    },
    onBuffered: (delta) => {
      metrics.bufferedBytes += delta;
    },
  };
}
