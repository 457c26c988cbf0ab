/**
 * The read side of the OCI distribution API (spec v1.1, "Pull"), answered
 * through the cache: any OCI client can use `ocicache serve --upstream` as a
 * mirror: manifests, blobs (misses in `misses.ts`, cached ones checked in
 * `verified.ts`), tag lists and the catalog (`tags.ts`); with the upstream
 * down, what is cached is still served.
 *
 * @module
 */

import { type Context, Hono } from "hono";
import { NotFoundError, OcicacheError, PolicyError, UsageError } from "../errors.ts";
import { type Digest, isDigest } from "../oci/digest.ts";
import { defaultMediaType, type Manifest, parseManifest } from "../oci/manifest.ts";
import { parseReference, type Reference } from "../oci/reference.ts";
import type { Resolved } from "../pull/cache.ts";
import { pullBlob } from "../pull/pull.ts";
import { API_HEADER, listResponse, mirrorError, registryError } from "./answers.ts";
import { FileResponse } from "./listener.ts";
import type { MirrorDeps } from "./mirror-deps.ts";
import { type Downloads, streamMiss, streamUncached } from "./misses.ts";
import type { PolicyGate } from "./policy-gate.ts";
import { parseRange } from "./range.ts";
import { Slots } from "./slots.ts";
import { cachedRepositories, paginate, TagMemory } from "./tags.ts";
import { verifyCached } from "./verified.ts";

const ROUTE_RE = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;
const TAGS_RE = /^\/v2\/(.+)\/tags\/list$/;

/**
 * The `/v2` sub-app (`app.route("/v2", mirrorRoutes(deps))`).
 *
 * @example
 * ```ts
 * import { mirrorRoutes } from "./mirror.ts";
 * // app.route("/v2", mirrorRoutes({ cache, metrics, upstream: "127.0.0.1:5000", limits }));
 * ```
 */
export function mirrorRoutes(deps: MirrorDeps): Hono {
  const app = new Hono();
  // One download per missing blob in this process, whoever asks and however slowly they read.
  const downloads: Downloads = { byDigest: new Map(), slots: new Slots(deps.limits.maxConcurrentDownloads) };
  const base = (c: Context) => c.json({}, 200, API_HEADER);
  app.get("/", base);
  const tags = new TagMemory();
  app.get("/_catalog", (c) => {
    const page = paginate(cachedRepositories(deps.cache, deps.upstream), c.req.query("n"), c.req.query("last"));
    return listResponse(c, "/v2/_catalog", { repositories: page.items }, page);
  });
  app.on(["GET", "HEAD"], "/*", async (c) => {
    const path = c.req.path;
    if (path === "/v2/") return base(c);
    const list = TAGS_RE.exec(path);
    if (list !== null) {
      try {
        const ref = toReference(deps.upstream, list[1]!, "latest");
        const page = paginate(await tags.list(deps.cache, ref, deps.upstream), c.req.query("n"), c.req.query("last"));
        return listResponse(c, path, { name: ref.repository, tags: page.items }, page);
      } catch (error) {
        deps.metrics.upstreamError(error);
        return mirrorError(c, error, "tags");
      }
    }
    const match = ROUTE_RE.exec(path);
    if (match === null) return registryError(c, 404, "NAME_UNKNOWN", "No such repository route");
    const [, name, kind, reference] = match as unknown as [string, string, "manifests" | "blobs", string];
    try {
      return kind === "manifests"
        ? await serveManifest(c, deps, name, reference)
        : await serveBlob(c, deps, downloads, name, reference);
    } catch (error) {
      deps.metrics.upstreamError(error);
      return mirrorError(c, error, kind);
    }
  });
  app.on(["POST", "PUT", "PATCH", "DELETE"], "/*", (c) =>
    registryError(c, 405, "UNSUPPORTED", "ocicache is a read-only mirror"),
  );
  return app;
}

/**
 * A manifest: only what parses as one (at most 4 MiB) is served as one, and
 * only a tag the upstream confirmed is recorded in `index.json`.
 */
async function serveManifest(c: Context, deps: MirrorDeps, name: string, reference: string): Promise<Response> {
  const ref = toReference(deps.upstream, name, reference);
  const resolved = await deps.cache.resolve(ref);
  const { bytes } = await deps.cache.manifestBytes(ref, resolved.digest);
  let manifest: Manifest;
  try {
    manifest = parseManifest(bytes, "", resolved.name);
  } catch {
    throw new NotFoundError(`Cannot serve "${resolved.digest}" as a manifest: it is not one`);
  }
  const mediaType = defaultMediaType(manifest);
  const kept = deps.gate === undefined ? {} : await policed(deps, deps.gate, ref, resolved, manifest);
  if (ref.digest === undefined && resolved.checked)
    await deps.cache.record(resolved, { mediaType, digest: resolved.digest, size: bytes.byteLength }, kept);
  const headers = {
    ...API_HEADER,
    "Content-Type": mediaType,
    "Content-Length": String(bytes.byteLength),
    "Docker-Content-Digest": resolved.digest,
    ETag: `"${resolved.digest}"`,
  };
  return new Response(c.req.method === "HEAD" ? null : bytes, { status: 200, headers });
}

/** The policy's answer for a manifest: the annotations that keep its signatures, or a refusal counted. */
async function policed(
  deps: MirrorDeps,
  gate: PolicyGate,
  ref: Reference,
  resolved: Resolved,
  manifest: Manifest,
): Promise<Record<string, string>> {
  try {
    return await gate.admit(deps.cache, ref, resolved, manifest);
  } catch (error) {
    if (error instanceof PolicyError) deps.metrics.policyRefusals++;
    throw error;
  }
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
  if (!miss) return serveCached(c, deps, ref, headers, range);
  if (metrics.blobStreams >= deps.limits.maxConnections) {
    metrics.refusedTotal++;
    return c.json(
      { errors: [{ code: "TOOMANYREQUESTS", message: "Too many blob downloads at once; try again" }] },
      429,
      { ...API_HEADER, "Retry-After": "1" },
    );
  }
  return cache.writable ? streamMiss(deps, downloads, ref, headers) : streamUncached(deps, ref);
}

/**
 * A blob from the cache (fetched first when it is not there: a range, or offline), checked once per server process
 * before it goes out from its file, whole or the range asked for.
 */
async function serveCached(
  c: Context,
  deps: MirrorDeps,
  ref: Reference & { digest: Digest },
  headers: Record<string, string>,
  range: string | undefined,
): Promise<Response> {
  const cachedBlob = async () => {
    const blob = await pullBlob(deps.cache, ref);
    if (blob.path === undefined)
      throw new OcicacheError("ESTORE", 1, `Cannot serve blob "${ref.digest}": the cache cannot be written`);
    return { ...blob, path: blob.path };
  };
  let blob = await cachedBlob();
  if (c.req.method === "HEAD")
    return new Response(null, { status: 200, headers: { ...headers, "Content-Length": String(blob.size) } });
  // Damaged on disk: dropped, and fetched again for this client.
  if (blob.hit && !(await verifyCached(deps, ref.digest, blob.path))) blob = await cachedBlob();
  const parsed = range === undefined ? [0, blob.size - 1] : parseRange(range, blob.size);
  if (parsed === undefined)
    return new Response(null, { status: 416, headers: { ...headers, "Content-Range": `bytes */${blob.size}` } });
  const [start, end] = parsed as [number, number];
  deps.metrics.bytesServedFromCache += end - start + 1;
  const file = { path: blob.path, start, end, chunkBytes: deps.limits.chunkBytes };
  if (range === undefined)
    return new FileResponse(file, { status: 200, headers: { ...headers, "Content-Length": String(blob.size) } });
  return new FileResponse(file, {
    status: 206,
    headers: {
      ...headers,
      "Content-Length": String(end - start + 1),
      "Content-Range": `bytes ${start}-${end}/${blob.size}`,
    },
  });
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
