/**
 * The read side of the OCI distribution API (spec v1.1, "Pull"), answered
 * through the cache: any OCI client can use `ocicache serve --upstream` as a
 * mirror. A miss streams to the client while it is written to the cache and
 * verified; concurrent requests for one missing blob cause one upstream
 * fetch; with the upstream down, what is cached is still served.
 *
 * @module
 */

import { lstatSync } from "node:fs";
import type { Context, Hono } from "hono";
import { growingSource, verifiedStream, type StreamHooks } from "../pull/blob-stream.ts";
import { fetchBlob } from "../pull/blobs.ts";
import type { BlobResult, Cache } from "../pull/cache.ts";
import { hashFileAsync, isDigest, type Digest } from "../oci/digest.ts";
import { AuthError, IntegrityError, NotFoundError, OcicacheError, RegistryError, UsageError } from "../errors.ts";
import { MAX_BLOB_BYTES } from "../oci/limits.ts";
import { defaultMediaType, parseManifest } from "../oci/manifest.ts";
import type { Metrics } from "./metrics.ts";
import { parseRange } from "./range.ts";
import type { BlobResponse } from "../registry/client.ts";
import { Slots } from "./slots.ts";
import { pullBlob } from "../pull/pull.ts";
import { parseReference, type Reference } from "../oci/reference.ts";

/** What the mirror needs. */
export interface MirrorDeps {
  cache: Cache;
  metrics: Metrics;
  /**
   * The registry pulled through, e.g. `127.0.0.1:5000`, whatever its shape (a bare name is a host, never Docker Hub's
   * namespace).
   */
  upstream: string;
  /** How much the mirror takes on at once. */
  limits: MirrorLimits;
}

/** The mirror's bounds: memory is at most `maxConnections` × 2 × `chunkBytes` for blob bodies. */
export interface MirrorLimits {
  /** Upstream blob downloads at once; further misses wait their turn. */
  maxConcurrentDownloads: number;
  /** Blob responses in progress at once; past it a client is told to come back (429, `Retry-After`). */
  maxConnections: number;
  /** Bytes read at once for one client: a blob response holds at most two such chunks. */
  chunkBytes: number;
}

const ROUTE_RE = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;
/** Bytes queued for one mirror client before its download waits, when the cache cannot be written. */
const MIRROR_QUEUE_BYTES = 4 * 1024 * 1024;
const API_HEADER = { "Docker-Distribution-API-Version": "registry/2.0" };

/**
 * Add the `/v2/` routes to an app.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { mountMirror } from "./mirror.ts";
 * // mountMirror(new Hono(), { cache, metrics, upstream: "127.0.0.1:5000" });
 * ```
 */
export function mountMirror(app: Hono, deps: MirrorDeps): void {
  // One download per missing blob in this process, whoever asks and however slowly they read.
  const downloads: Downloads = { byDigest: new Map(), slots: new Slots(deps.limits.maxConcurrentDownloads) };
  app.get("/v2/", (c) => c.json({}, 200, API_HEADER));
  app.on(["GET", "HEAD"], "/v2/*", async (c) => {
    const match = ROUTE_RE.exec(new URL(c.req.url).pathname);
    if (match === null) return registryError(c, 404, "NAME_UNKNOWN", "No such repository route");
    const [, name, kind, reference] = match as unknown as [string, string, "manifests" | "blobs", string];
    try {
      return kind === "manifests"
        ? await serveManifest(c, deps, name, reference)
        : await serveBlob(c, deps, downloads, name, reference);
    } catch (error) {
      return mirrorError(c, error, kind);
    }
  });
  app.on(["POST", "PUT", "PATCH", "DELETE"], "/v2/*", (c) =>
    registryError(c, 405, "UNSUPPORTED", "ocicache is a read-only mirror"),
  );
}

/**
 * A manifest: only what parses as one (at most 4 MiB) is served as one, and
 * only a tag the upstream confirmed is recorded in `index.json`.
 */
async function serveManifest(c: Context, deps: MirrorDeps, name: string, reference: string): Promise<Response> {
  const ref = toReference(deps.upstream, name, reference);
  const resolved = await deps.cache.resolve(ref);
  const { bytes } = await deps.cache.manifestBytes(ref, resolved.digest);
  let manifest;
  try {
    manifest = parseManifest(bytes, "", resolved.name);
  } catch {
    throw new NotFoundError(`Cannot serve "${resolved.digest}" as a manifest: it is not one`);
  }
  const mediaType = defaultMediaType(manifest);
  if (ref.digest === undefined && resolved.checked)
    await deps.cache.record(resolved, { mediaType, digest: resolved.digest, size: bytes.byteLength }, {});
  const headers = {
    ...API_HEADER,
    "Content-Type": mediaType,
    "Content-Length": String(bytes.byteLength),
    "Docker-Content-Digest": resolved.digest,
    ETag: `"${resolved.digest}"`,
  };
  return new Response(c.req.method === "HEAD" ? null : bytes, { status: 200, headers });
}

async function serveBlob(
  c: Context,
  deps: MirrorDeps,
  downloads: Downloads,
  name: string,
  reference: string,
): Promise<Response> {
  if (!isDigest(reference))
    return registryError(c, 400, "DIGEST_INVALID", `"${reference.slice(0, 80)}" is not a sha256 digest`);
  const ref = toReference(deps.upstream, name, reference) as Reference & { digest: Digest };
  const { cache, metrics } = deps;
  const range = c.req.header("range");
  const headers: Record<string, string> = {
    ...API_HEADER,
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": ref.digest,
    "Accept-Ranges": "bytes",
    ETag: `"${ref.digest}"`,
  };
  const cached = cache.store.stat(ref.digest);
  if (cached === undefined && c.req.method === "HEAD") {
    // A HEAD of a missing blob asks upstream for the size: no download for a question.
    const size = cache.options.offline ? undefined : await (await cache.client()).headBlob(ref, ref.digest);
    if (size === undefined) throw new NotFoundError(`Cannot find blob "${ref.digest}" offline: it is not in the cache`);
    return new Response(null, { status: 200, headers: { ...headers, "Content-Length": String(size) } });
  }
  const miss = cached === undefined && c.req.method === "GET" && range === undefined && !cache.options.offline;
  if (miss && metrics.blobStreams >= deps.limits.maxConnections) {
    metrics.refusedTotal++;
    return c.json(
      { errors: [{ code: "TOOMANYREQUESTS", message: "Too many blob downloads at once; try again" }] },
      429,
      { ...API_HEADER, "Retry-After": "1" },
    );
  }
  if (miss) {
    return cache.writable ? streamMiss(deps, downloads, ref, headers) : streamUncached(deps, ref);
  }
  let blob = await pullBlob(cache, ref);
  if (blob.path === undefined)
    throw new OcicacheError("ESTORE", 1, `Cannot serve blob "${ref.digest}": the cache cannot be written`);
  if (c.req.method === "HEAD")
    return new Response(null, { status: 200, headers: { ...headers, "Content-Length": String(blob.size) } });
  if (blob.hit && !(await verifyCached(deps, ref.digest, blob.path))) {
    // Damaged on disk: dropped, and fetched again for this client.
    blob = await pullBlob(cache, ref);
    if (blob.path === undefined)
      throw new OcicacheError("ESTORE", 1, `Cannot serve blob "${ref.digest}": the cache cannot be written`);
  }
  if (range === undefined) {
    metrics.bytesServedFromCache += blob.size;
    return new Response(Bun.file(blob.path), {
      status: 200,
      headers: { ...headers, "Content-Length": String(blob.size) },
    });
  }
  const parsed = parseRange(range, blob.size);
  if (parsed === undefined)
    return new Response(null, { status: 416, headers: { ...headers, "Content-Range": `bytes */${blob.size}` } });
  const [start, end] = parsed;
  metrics.bytesServedFromCache += end - start + 1;
  return new Response(Bun.file(blob.path).slice(start, end + 1), {
    status: 206,
    headers: {
      ...headers,
      "Content-Length": String(end - start + 1),
      "Content-Range": `bytes ${start}-${end}/${blob.size}`,
    },
  });
}

/**
 * A missing blob: one download into the cache's partial file at the
 * upstream's pace, and each client reading that file as it grows at its own
 * pace, verified as it goes (a mismatch cuts every client's response).
 */
async function streamMiss(
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
          return await fetchBlob(deps.cache, ref, descriptor);
        }
        // One request upstream: the GET that starts the download also gives the size for the client.
        const first = await sizedGet(deps.cache, ref).catch((error) => {
          unsized(error);
          throw error;
        });
        sized(first.size);
        const descriptor = { mediaType: "application/octet-stream", digest: ref.digest, size: first.size };
        return await fetchBlob(deps.cache, ref, descriptor, { firstResponse: first.sent });
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
  const source = growingSource(deps.cache.store, ref.digest, size, download.done, deps.limits.chunkBytes);
  const body = verifiedStream(source, { digest: ref.digest, size }, streamHooks(deps));
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
async function streamUncached(deps: MirrorDeps, ref: Reference & { digest: Digest }): Promise<Response> {
  const { sent, size } = await sizedGet(deps.cache, ref);
  const descriptor = { mediaType: "application/octet-stream", digest: ref.digest, size };
  let ready: (() => void) | undefined;
  let gone = false;
  const body = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        fetchBlob(deps.cache, ref, descriptor, {
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
interface Downloads {
  /** Each blob's size (known once its download's first answer came) and the download itself. */
  byDigest: Map<Digest, { size: Promise<number>; done: Promise<BlobResult> }>;
  slots: Slots;
}

/**
 * Whether a cached blob is what its name says: hashed the first time this
 * process serves it (one hash for every client asking at once), and again
 * whenever the file changed (inode, size or ctime). A damaged one is dropped
 * and counted.
 */
async function verifyCached(deps: MirrorDeps, digest: Digest, path: string): Promise<boolean> {
  const identity = fileIdentity(path);
  if (identity !== undefined && verifiedFiles.get(digest) === identity) return true;
  let check = verifying.get(path);
  if (check === undefined) {
    check = hashFileAsync(path).then(
      (actual) => actual === digest,
      () => false,
    );
    verifying.set(path, check);
    const forget = () => verifying.delete(path);
    check.then(forget, forget);
  }
  if (await check) {
    if (identity !== undefined) {
      if (verifiedFiles.size >= MAX_VERIFIED_FILES) verifiedFiles.clear();
      verifiedFiles.set(digest, identity);
    }
    return true;
  }
  if (fileIdentity(path) === identity) dropDamaged(deps, digest);
  return false;
}

/** Cached blobs this process has hashed, by digest, with the identity of the file then. */
const verifiedFiles = new Map<Digest, string>();
/** Hashes of cached blobs in progress, by path. */
const verifying = new Map<string, Promise<boolean>>();
/** Files remembered at most; past it the memory starts over. */
const MAX_VERIFIED_FILES = 10_000;

/** What tells a file from the same file changed or replaced: inode, size and the time of its last change. */
function fileIdentity(path: string): string | undefined {
  try {
    const stat = lstatSync(path);
    return `${stat.dev}:${stat.ino}:${stat.size}:${stat.ctimeMs}`;
  } catch {
    return undefined;
  }
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

/** A cached blob failed verification: drop it, so that it is fetched again. */
function dropDamaged(deps: MirrorDeps, digest: Digest): void {
  deps.metrics.damagedBlobsDropped++;
  deps.cache.warn(`Dropping cached blob "${digest}": its content does not match its digest`);
  try {
    deps.cache.store.remove(digest);
  } catch (error) {
    deps.cache.noteUnwritable(error);
  }
}

/** The reference on the upstream: the upstream is the registry, whatever its shape (no Docker Hub defaults). */
function toReference(upstream: string, name: string, reference: string): Reference {
  let parsed: Reference;
  try {
    parsed = parseReference(`${NAME_CHECK_HOST}/${name}${isDigest(reference) ? `@${reference}` : `:${reference}`}`);
  } catch (error) {
    throw new UsageError((error as Error).message.replace(`${NAME_CHECK_HOST}/`, ""), { cause: error });
  }
  return { ...parsed, registry: upstream };
}

/** A host only used to check a repository name and a tag with the reference grammar. */
const NAME_CHECK_HOST = "mirror.invalid";

/** An error in the distribution spec's JSON format. */
function registryError(
  c: Context,
  status: 400 | 404 | 405 | 416 | 500 | 502 | 503,
  code: string,
  message: string,
): Response {
  return c.json({ errors: [{ code, message }] }, status, API_HEADER);
}

function mirrorError(c: Context, error: unknown, kind: "manifests" | "blobs"): Response {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof NotFoundError)
    return registryError(c, 404, kind === "manifests" ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN", message);
  if (error instanceof UsageError) return registryError(c, 400, "NAME_INVALID", message);
  if (error instanceof AuthError) return registryError(c, 502, "UNAUTHORIZED", message);
  if (error instanceof IntegrityError)
    return registryError(c, 502, kind === "manifests" ? "MANIFEST_INVALID" : "BLOB_UNKNOWN", message);
  return registryError(c, 503, "UNAVAILABLE", message);
}
