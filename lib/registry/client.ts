/**
 * A client for the OCI distribution API (spec v1.1): `/v2/` ping,
 * manifests with every image media type in `Accept`, blobs (redirects and
 * `Range` included), through the registry's mirrors first. A mirror that
 * fails is skipped for the rest of the client's life (one pull) with one
 * report; the origin still serves, and every byte is verified whoever sent it.
 *
 * @module
 */

import {
  AuthError,
  DigestMismatchError,
  IntegrityError,
  NotFoundError,
  RegistryError,
  type RegistryErrorDetail,
} from "../errors.ts";
import { type Digest, digestOf, isDigest } from "../oci/digest.ts";
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  MAX_BLOB_BYTES,
  MAX_MANIFEST_BYTES,
  MAX_TAG_LIST_BYTES,
  MAX_TAGS,
} from "../oci/limits.ts";
import { MANIFEST_MEDIA_TYPES, OCI_INDEX, referrersTag } from "../oci/names.ts";
import { formatReference, type Reference, TAG_RE } from "../oci/reference.ts";
import { type BodyLimits, readBounded } from "./body.ts";
import { answerChallenge } from "./challenge.ts";
import { type Credentials, findCredentials } from "./credentials.ts";
import { type Capability, type Endpoint, endpointsFor, type HostsConfig } from "./hosts.ts";
import { isSameOrigin, sendRequest, type TransportOptions } from "./transport.ts";

/** Options of a registry client. */
export interface RegistryClientOptions extends TransportOptions, HostsConfig {
  /** Where credentials come from, after the host's own in the config. @default findCredentials */
  credentials?: (host: string) => Credentials | undefined;
  /** Told once per mirror that fails and is skipped from then on. */
  onMirrorFailure?: (mirror: string, registry: string, reason: string) => void;
}

/** What a manifest request returned: its bytes are verified against its digest. */
export interface FetchedManifest {
  digest: Digest;
  mediaType: string;
  bytes: Uint8Array;
}

/** What a HEAD of a manifest said. */
export interface ManifestHead {
  digest: Digest;
  mediaType: string;
  size: number;
}

/** A blob response, and the host that sent it. */
export interface BlobResponse {
  response: Response;
  endpoint: Endpoint;
}

/**
 * Talks to registries and their mirrors; one instance keeps its tokens and
 * its list of failed mirrors.
 *
 * @example Ask a registry how it lets us in (a server of the example's own stands in for it)
 * ```ts
 * import assert from "node:assert";
 * import { RegistryClient } from "./client.ts";
 * const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({}) });
 * const client = new RegistryClient();
 * assert.equal(await client.ping(`127.0.0.1:${server.port}`), "open");
 * server.stop(true);
 * ```
 */
export class RegistryClient {
  readonly options: RegistryClientOptions;
  #authorization = new Map<string, string>();
  #failed = new Set<string>();

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
  }

  /**
   * Check that a host speaks the distribution API (`GET /v2/`), and that its
   * credentials work when it asks for them. Says how access was granted:
   * `open` (no challenge), `anonymous` (a token without credentials),
   * `credentials`, or `needed` when it demands credentials and none are
   * configured.
   *
   * @throws {RegistryError} when it cannot be reached or answers otherwise.
   * @throws {AuthError} when it refuses the credentials.
   */
  async ping(registry: string): Promise<"open" | "anonymous" | "credentials" | "needed"> {
    const endpoint = endpointsFor(registry, this.options).at(-1)!;
    const credentials = this.#credentials(endpoint);
    let sent: Sent;
    try {
      // The request path every pull takes: a challenge through a redirect, or over plain HTTP, gets nothing.
      sent = await this.#send(endpoint, { path: "", repository: "", action: `use "${registry}"` }, "GET", {});
    } catch (error) {
      const refusedAnonymous = error instanceof AuthError && error.reason === "refused" && credentials === undefined;
      if (error instanceof AuthError && (error.reason === "missing" || refusedAnonymous)) return "needed";
      throw error;
    }
    const { response, challenged } = sent;
    await response.body?.cancel();
    if (response.status === 401 || response.status === 403) {
      if (challenged && credentials === undefined) return "needed";
      throw new AuthError(`Cannot use "${registry}": it refused the credentials (${response.status})`, {
        reason: "refused",
        status: response.status,
      });
    }
    if (response.status !== 200)
      throw new RegistryError(`Cannot use "${registry}": /v2/ answered ${response.status}`, {
        status: response.status,
      });
    return !challenged ? "open" : credentials === undefined ? "anonymous" : "credentials";
  }

  /**
   * HEAD a manifest to learn the digest a tag points to, without its body.
   *
   * A registry that sends no `Docker-Content-Digest` is asked with a GET.
   *
   * @throws {NotFoundError} when the registry does not know it.
   */
  async headManifest(ref: Reference, tagOrDigest: string): Promise<ManifestHead> {
    const { response } = await this.#request(
      ref,
      "HEAD",
      `manifests/${tagOrDigest}`,
      { Accept: MANIFEST_MEDIA_TYPES.join(", ") },
      capabilityOf(tagOrDigest),
    );
    await check(response, ref, `manifest "${tagOrDigest}"`, this.#bodyLimits);
    const digest = response.headers.get("docker-content-digest");
    if (!isDigest(digest)) {
      // Not every registry names the digest on HEAD (the spec says SHOULD): the GET's bytes do.
      const fetched = await this.getManifest(ref, tagOrDigest);
      return { digest: fetched.digest, mediaType: fetched.mediaType, size: fetched.bytes.byteLength };
    }
    return {
      digest,
      mediaType: (response.headers.get("content-type") ?? "").split(";")[0]!.trim(),
      size: Number(response.headers.get("content-length") ?? -1),
    };
  }

  /**
   * GET a manifest, bounded to `MAX_MANIFEST_BYTES`, and verify its digest:
   * the requested one when fetched by digest, else `Docker-Content-Digest`.
   * A mirror whose bytes do not match is skipped and the next host asked.
   *
   * @throws {NotFoundError} when the registry does not know it.
   * @throws {IntegrityError} when it is too large or its digest is wrong.
   */
  async getManifest(ref: Reference, tagOrDigest: string): Promise<FetchedManifest> {
    for (;;) {
      const { response, endpoint } = await this.#request(
        ref,
        "GET",
        `manifests/${tagOrDigest}`,
        { Accept: MANIFEST_MEDIA_TYPES.join(", ") },
        capabilityOf(tagOrDigest),
      );
      await check(response, ref, `manifest "${tagOrDigest}"`, this.#bodyLimits);
      try {
        const bytes = await readBounded(
          response,
          MAX_MANIFEST_BYTES,
          `manifest of "${formatReference(ref)}"`,
          this.#bodyLimits,
        );
        const digest = digestOf(bytes);
        const claimed = isDigest(tagOrDigest) ? tagOrDigest : response.headers.get("docker-content-digest");
        if (claimed?.startsWith("sha256:") && claimed !== digest) {
          throw new DigestMismatchError(claimed, digest, `manifest of "${formatReference(ref)}"`);
        }
        const mediaType = (response.headers.get("content-type") ?? "").split(";")[0]!.trim();
        return { digest, mediaType, bytes };
      } catch (error) {
        if (!(error instanceof IntegrityError) || !endpoint.mirror) throw error;
        this.markFailed(endpoint, ref.registry, error.message);
      }
    }
  }

  /**
   * The manifests that name `digest` as their `subject` (distribution spec v1.1, "Listing Referrers"): the image
   * index the referrers API answers, bounded to `MAX_MANIFEST_BYTES`; from a registry without that API (it answers
   * 404), the index under the referrers tag schema's tag. The list is not content-addressed: each manifest it names
   * is fetched by its digest and verified.
   *
   * @returns the index's bytes, or `undefined` when nothing refers to `digest`.
   */
  async getReferrers(ref: Reference, digest: Digest): Promise<Uint8Array | undefined> {
    const what = `referrers of "${digest}"`;
    const { response } = await this.#request(ref, "GET", `referrers/${digest}`, { Accept: OCI_INDEX }, "resolve");
    if (response.status !== 404) {
      await check(response, ref, what, this.#bodyLimits);
      return readBounded(response, MAX_MANIFEST_BYTES, `${what} of "${formatReference(ref)}"`, this.#bodyLimits);
    }
    await response.body?.cancel();
    try {
      return (await this.getManifest(ref, referrersTag(digest))).bytes;
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  /**
   * HEAD a blob to learn its size.
   *
   * @throws {NotFoundError} when the registry does not know the blob.
   */
  async headBlob(ref: Reference, digest: Digest): Promise<number> {
    const { response } = await this.#request(ref, "HEAD", `blobs/${digest}`, {}, "pull");
    await check(response, ref, `blob "${digest}"`, this.#bodyLimits);
    const size = Number(response.headers.get("content-length") ?? "");
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RegistryError(`Cannot fetch blob "${digest}" from "${ref.registry}": it sent no Content-Length`);
    }
    if (size > MAX_BLOB_BYTES) {
      throw new IntegrityError(
        `Cannot accept blob "${digest}" from "${ref.registry}": ${size} bytes is larger than the limit of ` +
          `${MAX_BLOB_BYTES}`,
      );
    }
    return size;
  }

  /**
   * Every tag of a repository (distribution spec, "Listing Tags"), following
   * the registry's pages (`Link: <…>; rel="next"`) up to `MAX_TAG_PAGES`,
   * `MAX_TAG_LIST_BYTES` and `MAX_TAGS` in all.
   *
   * @throws {NotFoundError} when the registry does not know the repository.
   * @throws {IntegrityError} when a page is not the tag list it should be, or the list passes its bounds.
   */
  async listTags(ref: Reference): Promise<string[]> {
    const tags = new Set<string>();
    let query = "";
    let left = MAX_TAG_LIST_BYTES;
    const what = `tag list of "${ref.repository}"`;
    for (let page = 0; page < MAX_TAG_PAGES; page++) {
      const { response } = await this.#request(ref, "GET", `tags/list${query}`, {}, "resolve");
      await check(response, ref, "tag list", this.#bodyLimits);
      const body = await readBounded(response, Math.min(MAX_MANIFEST_BYTES, left), what, this.#bodyLimits).catch(
        (error) => {
          if (error instanceof IntegrityError && left < MAX_MANIFEST_BYTES)
            throw new IntegrityError(`Cannot accept the ${what}: its pages hold more than ${MAX_TAG_LIST_BYTES} bytes`);
          throw error;
        },
      );
      left -= body.byteLength;
      let parsed: { tags?: unknown };
      try {
        parsed = JSON.parse(new TextDecoder().decode(body));
      } catch (cause) {
        throw new IntegrityError(`Cannot use the tag list of "${ref.repository}": it is not JSON`, { cause });
      }
      if (parsed.tags !== null && parsed.tags !== undefined && !Array.isArray(parsed.tags)) {
        throw new IntegrityError(`Cannot use the tag list of "${ref.repository}": "tags" is not a list`);
      }
      for (const tag of parsed.tags ?? []) if (typeof tag === "string" && TAG_RE.test(tag)) tags.add(tag);
      if (tags.size > MAX_TAGS)
        throw new IntegrityError(`Cannot accept the ${what}: it has more than ${MAX_TAGS} tags`);
      const next = /<[^>]*\?([^>]*)>\s*;\s*rel="?next"?/.exec(response.headers.get("link") ?? "");
      if (next === null) break;
      query = `?${next[1]}`;
    }
    return [...tags];
  }

  /**
   * GET a blob; the caller reads and verifies the body, and tells
   * `markFailed` when a mirror's bytes were wrong. With `offset`, asks for
   * the rest with `Range`: the answer is 206, or 200 when the host ignores ranges.
   *
   * @throws {NotFoundError} when the registry does not know the blob.
   */
  async getBlob(ref: Reference, digest: Digest, offset = 0): Promise<BlobResponse> {
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const result = await this.#request(ref, "GET", `blobs/${digest}`, headers, "pull");
    await check(result.response, ref, `blob "${digest}"`, this.#bodyLimits);
    return result;
  }

  /** Skip a mirror for the rest of this client's life, and say so once. */
  markFailed(endpoint: Endpoint, registry: string, reason: string): void {
    if (!endpoint.mirror || this.#failed.has(endpoint.host)) return;
    this.#failed.add(endpoint.host);
    this.options.onMirrorFailure?.(endpoint.host, registry, reason);
  }

  /** Mirrors with the capability that have not failed, then the origin; the first that answers wins. */
  async #request(
    ref: Reference,
    method: "GET" | "HEAD",
    path: string,
    headers: Record<string, string>,
    capability: Capability,
  ): Promise<BlobResponse> {
    const endpoints = endpointsFor(ref.registry, this.options).filter(
      (e) => !e.mirror || (e.capabilities.has(capability) && !this.#failed.has(e.host)),
    );
    for (const endpoint of endpoints) {
      const target = {
        path: `${ref.repository}/${path}`,
        repository: ref.repository,
        action: `pull "${formatReference(ref)}"`,
      };
      if (!endpoint.mirror)
        return { response: (await this.#send(endpoint, target, method, headers)).response, endpoint };
      try {
        const { response } = await this.#send(endpoint, target, method, headers);
        if (response.ok) return { response, endpoint };
        await response.body?.cancel();
        if (response.status >= 500 || response.status === 429)
          this.markFailed(endpoint, ref.registry, `it answered ${response.status}`);
      } catch (error) {
        this.markFailed(endpoint, ref.registry, error instanceof Error ? error.message : String(error));
      }
    }
    throw new TypeError("endpointsFor() always ends with the origin");
  }

  /**
   * One request to `endpoint`, answering its own challenge once: the one way every request reaches a registry
   * (rule 8). A `401` from a redirect target fails (its realm gets no credentials); the token realm is asked only
   * as `answerChallenge` allows.
   */
  async #send(
    endpoint: Endpoint,
    target: { path: string; repository: string; action: string },
    method: "GET" | "HEAD",
    headers: Record<string, string>,
  ): Promise<Sent> {
    const tokenKey = `${endpoint.host}/${target.repository}`;
    const url = `${endpoint.apiUrl}/${target.path}`;
    const send = () => {
      const authorization = this.#authorization.get(tokenKey) ?? this.#authorization.get(endpoint.host);
      return sendRequest(
        {
          url,
          method,
          headers: authorization === undefined ? headers : { ...headers, Authorization: authorization },
          host: endpoint.host,
          ...(endpoint.ca !== undefined && { ca: endpoint.ca }),
        },
        this.options,
      );
    };
    const sent = await send();
    if (sent.response.status !== 401) return { response: sent.response, challenged: false };
    await sent.response.body?.cancel();
    if (!isSameOrigin(sent.url, url)) {
      // The credentials belong to the endpoint; a redirect target that asks for them gets nothing.
      throw new AuthError(
        `Cannot ${target.action}: "${new URL(sent.url).host}", where "${endpoint.host}" redirected, ` +
          `asks for credentials; they are sent only to "${endpoint.host}"`,
        { reason: "challenge", status: 401 },
      );
    }
    const authorization = await answerChallenge(sent.response.headers.get("www-authenticate") ?? "", {
      host: endpoint.host,
      url,
      repository: target.repository,
      credentials: this.#credentials(endpoint),
      transport: { ...this.options, ...(endpoint.ca !== undefined && { ca: endpoint.ca }) },
    });
    // A server's client lives long and any of its clients names a repository: the tokens kept are bounded.
    if (this.#authorization.size >= MAX_AUTHORIZATIONS)
      this.#authorization.delete(this.#authorization.keys().next().value!);
    this.#authorization.set(authorization.startsWith("Basic ") ? endpoint.host : tokenKey, authorization);
    return { response: (await send()).response, challenged: true };
  }

  get #bodyLimits(): BodyLimits {
    return { idleTimeoutMs: this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS };
  }

  #credentials(endpoint: Endpoint): Credentials | undefined {
    return (
      endpoint.credentials ?? (this.options.credentials ?? ((host: string) => findCredentials(host)))(endpoint.host)
    );
  }
}

/** What one request came to: the answer, and whether a challenge was answered on the way. */
interface Sent {
  response: Response;
  challenged: boolean;
}

/** Authorizations (a token per repository, Basic per host) kept at most; the oldest goes first. */
const MAX_AUTHORIZATIONS = 1024;

/** The most pages of a tag list followed. */
const MAX_TAG_PAGES = 100;

/** Tags need `resolve`; content named by digest needs `pull`. */
function capabilityOf(tagOrDigest: string): Capability {
  return isDigest(tagOrDigest) ? "pull" : "resolve";
}

/** Turn a non-2xx answer into the matching typed error. */
async function check(response: Response, ref: Reference, what: string, limits: BodyLimits): Promise<void> {
  if (response.ok) return;
  const details = await readErrorDetails(response, limits);
  const name = formatReference(ref);
  const said = details.length > 0 ? `: ${details.map((d) => d.code).join(", ")}` : "";
  if (response.status === 404) {
    throw new NotFoundError(`Cannot find ${what} of "${name}" in "${ref.registry}"${said}`);
  }
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(
      `Cannot pull "${name}": "${ref.registry}" refused the credentials (${response.status}${said})`,
      { reason: "refused", status: response.status },
    );
  }
  throw new RegistryError(`Cannot fetch ${what} of "${name}": "${ref.registry}" answered ${response.status}${said}`, {
    status: response.status,
    details,
  });
}

async function readErrorDetails(response: Response, limits: BodyLimits): Promise<RegistryErrorDetail[]> {
  try {
    const body = JSON.parse(new TextDecoder().decode(await readBounded(response, 64 * 1024, "error body", limits))) as {
      errors?: unknown;
    };
    if (!Array.isArray(body.errors)) return [];
    return body.errors
      .filter((e): e is { code: string; message?: unknown } => typeof e?.code === "string")
      .map((e) => ({
        code: e.code.slice(0, 64),
        ...(typeof e.message === "string" && { message: e.message.slice(0, 200) }),
      }));
  } catch {
    return [];
  }
}
