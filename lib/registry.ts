/**
 * A client for the OCI distribution API (spec v1.1): `/v2/` ping, the
 * bearer-token and basic auth challenges, manifests with every image media
 * type in `Accept`, and blobs (redirects and `Range` included).
 *
 * @module
 */

import { findCredentials, type Credentials } from "./auth.ts";
import { digestOf, isDigest, type Digest } from "./digest.ts";
import { AuthError, DigestMismatchError, IntegrityError, NotFoundError, RegistryError, type RegistryErrorDetail } from "./errors.ts";
import { formatReference, type Reference } from "./reference.ts";
import { sendRequest, type TransportOptions } from "./transport.ts";

/** The manifest media types ocicache asks for and accepts. */
export const MANIFEST_MEDIA_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
] as const;

/** The largest manifest accepted, in bytes (the spec lets registries refuse past 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Options of a registry client. */
export interface RegistryClientOptions extends TransportOptions {
  /** Hosts spoken to over plain HTTP besides `localhost` and loopback addresses. @default [] */
  insecureRegistries?: string[];
  /** Where credentials come from. @default findCredentials */
  credentials?: (host: string) => Credentials | undefined;
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

/**
 * Talks to registries; one instance keeps its tokens for the process.
 *
 * @example
 * ```ts
 * import { RegistryClient } from "./registry.ts";
 * import { parseReference } from "./reference.ts";
 * const client = new RegistryClient();
 * const ref = parseReference("127.0.0.1:5000/unikraft/nginx:1.25");
 * const manifest = await client.getManifest(ref, ref.tag!).catch(() => undefined);
 * ```
 */
export class RegistryClient {
  readonly options: RegistryClientOptions;
  #authorization = new Map<string, string>();

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
  }

  /**
   * Check that the registry speaks the distribution API (`GET /v2/`).
   *
   * @throws {RegistryError} when it cannot be reached or answers otherwise.
   */
  async ping(registry: string): Promise<void> {
    const response = await sendRequest(
      { url: `${this.baseUrl(registry)}/v2/`, method: "GET", headers: {}, host: registry },
      this.options,
    );
    await response.body?.cancel();
    if (response.status !== 200 && response.status !== 401) {
      throw new RegistryError(`Cannot use "${registry}": /v2/ answered ${response.status}`, { status: response.status });
    }
  }

  /**
   * HEAD a manifest to learn the digest a tag points to, without its body.
   *
   * @throws {NotFoundError} when the registry does not know it.
   * @throws {RegistryError} when the answer carries no usable digest.
   */
  async headManifest(ref: Reference, tagOrDigest: string): Promise<ManifestHead> {
    const response = await this.#request(ref, "HEAD", `manifests/${tagOrDigest}`, { Accept: MANIFEST_MEDIA_TYPES.join(", ") });
    await this.#check(response, ref, `manifest "${tagOrDigest}"`);
    const digest = response.headers.get("docker-content-digest");
    if (!isDigest(digest)) {
      throw new RegistryError(`Cannot resolve "${formatReference(ref)}": the registry sent no sha256 Docker-Content-Digest`);
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
   *
   * @throws {NotFoundError} when the registry does not know it.
   * @throws {IntegrityError} when it is too large or its digest is wrong.
   */
  async getManifest(ref: Reference, tagOrDigest: string): Promise<FetchedManifest> {
    const response = await this.#request(ref, "GET", `manifests/${tagOrDigest}`, { Accept: MANIFEST_MEDIA_TYPES.join(", ") });
    await this.#check(response, ref, `manifest "${tagOrDigest}"`);
    const bytes = await readBounded(response, MAX_MANIFEST_BYTES, `manifest of "${formatReference(ref)}"`);
    const digest = digestOf(bytes);
    const claimed = isDigest(tagOrDigest) ? tagOrDigest : response.headers.get("docker-content-digest");
    if (claimed !== null && claimed.startsWith("sha256:") && claimed !== digest) {
      throw new DigestMismatchError(claimed, digest, `manifest of "${formatReference(ref)}"`);
    }
    const mediaType = (response.headers.get("content-type") ?? "").split(";")[0]!.trim();
    return { digest, mediaType, bytes };
  }

  /**
   * HEAD a blob to learn its size.
   *
   * @throws {NotFoundError} when the registry does not know the blob.
   */
  async headBlob(ref: Reference, digest: Digest): Promise<number> {
    const response = await this.#request(ref, "HEAD", `blobs/${digest}`, {});
    await this.#check(response, ref, `blob "${digest}"`);
    const size = Number(response.headers.get("content-length") ?? "");
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RegistryError(`Cannot fetch blob "${digest}" from "${ref.registry}": it sent no Content-Length`);
    }
    return size;
  }

  /**
   * GET a blob; the caller reads and verifies the body. With `offset`, asks
   * for the rest with `Range` and the answer is 206, or 200 when the registry
   * ignores ranges.
   *
   * @throws {NotFoundError} when the registry does not know the blob.
   */
  async getBlob(ref: Reference, digest: Digest, offset = 0): Promise<Response> {
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const response = await this.#request(ref, "GET", `blobs/${digest}`, headers);
    await this.#check(response, ref, `blob "${digest}"`);
    return response;
  }

  /** `http://` for loopback and the insecure list, `https://` for the rest; Docker Hub's API host. */
  baseUrl(registry: string): string {
    const host = registry === "docker.io" ? "registry-1.docker.io" : registry;
    const name = host.replace(/:\d+$/, "");
    const plain = name === "localhost" || name === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(name)
      || (this.options.insecureRegistries ?? []).includes(registry);
    return `${plain ? "http" : "https"}://${host}`;
  }

  async #request(ref: Reference, method: "GET" | "HEAD", path: string, headers: Record<string, string>): Promise<Response> {
    const key = `${ref.registry}/${ref.repository}`;
    const send = () => {
      const authorization = this.#authorization.get(key) ?? this.#authorization.get(ref.registry);
      return sendRequest({
        url: `${this.baseUrl(ref.registry)}/v2/${ref.repository}/${path}`,
        method,
        headers: authorization === undefined ? headers : { ...headers, Authorization: authorization },
        host: ref.registry,
      }, this.options);
    };
    const response = await send();
    if (response.status !== 401) return response;
    await response.body?.cancel();
    await this.#authenticate(ref, response.headers.get("www-authenticate") ?? "");
    return send();
  }

  async #authenticate(ref: Reference, challengeHeader: string): Promise<void> {
    const challenge = parseChallenge(challengeHeader);
    const credentials = (this.options.credentials ?? ((host: string) => findCredentials(host)))(ref.registry);
    if (challenge.scheme === "basic") {
      if (credentials === undefined) {
        throw new AuthError(`Cannot pull from "${ref.registry}": it requires credentials (add them to the docker config.json)`, { status: 401 });
      }
      this.#authorization.set(ref.registry, `Basic ${btoa(`${credentials.username}:${credentials.password}`)}`);
      return;
    }
    if (challenge.scheme !== "bearer" || challenge.params.realm === undefined) {
      throw new AuthError(`Cannot pull from "${ref.registry}": unsupported authentication challenge "${challengeHeader.slice(0, 60)}"`, { status: 401 });
    }
    const token = await this.#fetchToken(ref, challenge.params, credentials);
    this.#authorization.set(`${ref.registry}/${ref.repository}`, `Bearer ${token}`);
  }

  async #fetchToken(ref: Reference, params: Record<string, string>, credentials: Credentials | undefined): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(params.realm!);
    } catch {
      throw new AuthError(`Cannot pull from "${ref.registry}": the token realm "${params.realm!.slice(0, 80)}" is not a URL`);
    }
    if (params.service !== undefined) realm.searchParams.set("service", params.service);
    realm.searchParams.set("scope", params.scope ?? `repository:${ref.repository}:pull`);
    const headers: Record<string, string> = credentials === undefined
      ? {}
      : { Authorization: `Basic ${btoa(`${credentials.username}:${credentials.password}`)}` };
    const response = await sendRequest({ url: realm.href, method: "GET", headers, host: realm.host }, this.options);
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw new AuthError(`Cannot pull from "${ref.registry}": the token server refused ${credentials === undefined ? "anonymous access" : "the credentials"} (${response.status})`, { status: response.status });
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new RegistryError(`Cannot get a token for "${ref.registry}": the token server answered ${response.status}`, { status: response.status });
    }
    const body = JSON.parse(new TextDecoder().decode(await readBounded(response, 1024 * 1024, "token response"))) as Record<string, unknown>;
    const token = body.token ?? body.access_token;
    if (typeof token !== "string" || token === "") {
      throw new AuthError(`Cannot pull from "${ref.registry}": the token server sent no token`);
    }
    return token;
  }

  /** Turn a non-2xx answer into the matching typed error. */
  async #check(response: Response, ref: Reference, what: string): Promise<void> {
    if (response.ok) return;
    const details = await readErrorDetails(response);
    const name = formatReference(ref);
    const said = details.length > 0 ? `: ${details.map((d) => d.code).join(", ")}` : "";
    if (response.status === 404) {
      throw new NotFoundError(`Cannot find ${what} of "${name}" in "${ref.registry}"${said}`);
    }
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(`Cannot pull "${name}": "${ref.registry}" refused the credentials (${response.status}${said})`, { status: response.status });
    }
    throw new RegistryError(`Cannot fetch ${what} of "${name}": "${ref.registry}" answered ${response.status}${said}`, { status: response.status, details });
  }
}

/** Parse `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (RFC 9110, section 11.6.1). */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const match = header.match(/^\s*([A-Za-z]+)\s*(.*)$/);
  const params: Record<string, string> = {};
  if (match === null) return { scheme: "", params };
  for (const part of match[2]!.matchAll(/([A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[part[1]!.toLowerCase()] = part[2] !== undefined ? part[2].replace(/\\(.)/g, "$1") : part[3]!;
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

/**
 * Read a whole body, refusing one longer than `limit` before reading it all.
 *
 * @throws {IntegrityError} when the body is larger than `limit`.
 */
export async function readBounded(response: Response, limit: number, what: string): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await response.body?.cancel();
    throw new IntegrityError(`Cannot accept ${what}: ${declared} bytes is larger than the limit of ${limit}`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body ?? []) {
    total += chunk.byteLength;
    if (total > limit) throw new IntegrityError(`Cannot accept ${what}: larger than the limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function readErrorDetails(response: Response): Promise<RegistryErrorDetail[]> {
  try {
    const body = JSON.parse(new TextDecoder().decode(await readBounded(response, 64 * 1024, "error body"))) as { errors?: unknown };
    if (!Array.isArray(body.errors)) return [];
    return body.errors
      .filter((e): e is { code: string; message?: unknown } => typeof e?.code === "string")
      .map((e) => ({ code: e.code.slice(0, 64), ...(typeof e.message === "string" && { message: e.message.slice(0, 200) }) }));
  } catch {
    return [];
  }
}
