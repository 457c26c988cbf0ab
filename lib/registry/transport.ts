/**
 * HTTP for registries: bounded retries with backoff on 429, 5xx and dropped
 * connections (never on a refused one) (honouring `Retry-After`), redirects followed by hand so that
 * `Authorization` never reaches another host, and a timeout until the
 * registry answers (connection and response headers).
 *
 * @module
 */

import { RegistryError } from "../errors.ts";
import { formatDuration } from "../units.ts";

/** How requests are sent and retried. */
export interface TransportOptions {
  /** The fetch implementation. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Retries after the first attempt on 429, 5xx and network errors. @default 3 */
  retries?: number;
  /** Milliseconds before the first retry; doubles each time. @default 250 */
  backoffMs?: number;
  /** The longest `Retry-After` that is waited for, in milliseconds. @default 30000 */
  maxRetryAfterMs?: number;
  /** Redirects followed before giving up. @default 5 */
  maxRedirects?: number;
  /** Milliseconds to wait for a registry to answer: the connection and the response headers. @default 30000 */
  connectTimeoutMs?: number;
  /** CA certificates (PEM) to trust instead of the default ones, for every request. */
  ca?: string[];
  /** Milliseconds a body may send nothing before its read fails. @default 30000 */
  idleTimeoutMs?: number;
}

/** One request: the registry host names the target in messages. */
export interface TransportRequest {
  url: string;
  method: "GET" | "HEAD";
  headers: Record<string, string>;
  /** The registry host, for messages. */
  host: string;
  /** CA certificates (PEM) to trust for this host instead of the default ones. */
  ca?: string[];
}

/** The statuses after which the same request may succeed. */
const RETRYABLE_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/** A response, and the URL that sent it (after redirects). */
export interface TransportResponse {
  response: Response;
  /** The URL of the last hop: another host than the request's when it was redirected there. */
  url: string;
}

/**
 * Send a request with retries and manual redirects.
 *
 * @throws {RegistryError} when the host cannot be reached after the retries,
 *   or redirects more often than allowed.
 * @example GET a registry's /v2/ (a server of the example's own stands in for the registry)
 * ```ts
 * import assert from "node:assert";
 * import { sendRequest } from "./transport.ts";
 * const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({}) });
 * const host = `127.0.0.1:${server.port}`;
 * const { response } = await sendRequest({ url: `http://${host}/v2/`, method: "GET", headers: {}, host });
 * assert.equal(response.status, 200);
 * server.stop(true);
 * ```
 */
export async function sendRequest(
  request: TransportRequest,
  options: TransportOptions = {},
): Promise<TransportResponse> {
  const retries = options.retries ?? 3;
  const backoffMs = options.backoffMs ?? 250;
  for (let attempt = 0; ; attempt++) {
    let sent: TransportResponse;
    try {
      sent = await followRedirects(request, options);
    } catch (error) {
      if (error instanceof RegistryError || attempt >= retries || isTlsError(error) || isRefused(error))
        throw toRegistryError(error, request.host);
      await Bun.sleep(backoffMs * 2 ** attempt);
      continue;
    }
    const { response } = sent;
    if (!RETRYABLE_STATUSES.has(response.status) || attempt >= retries) return sent;
    const wait = retryAfterMs(response.headers.get("retry-after")) ?? backoffMs * 2 ** attempt;
    if (wait > (options.maxRetryAfterMs ?? 30_000)) return sent;
    await response.body?.cancel();
    await Bun.sleep(wait);
  }
}

/**
 * Whether a response came from the request's own origin (scheme, host and port), not from a redirect target elsewhere.
 */
export function isSameOrigin(a: string, b: string): boolean {
  return new URL(a).origin === new URL(b).origin;
}

async function followRedirects(request: TransportRequest, options: TransportOptions): Promise<TransportResponse> {
  const doFetch = options.fetch ?? fetch;
  const maxRedirects = options.maxRedirects ?? 5;
  const ca = request.ca ?? options.ca;
  let url = request.url;
  for (let hop = 0; hop <= maxRedirects; hop++) {
    const headers = { ...request.headers };
    const sameOrigin = isSameOrigin(url, request.url);
    if (!sameOrigin) delete headers.Authorization;
    const tls = sameOrigin && ca !== undefined ? { tls: { ca } } : {};
    const response = await withTimeout(options.connectTimeoutMs ?? 30_000, request.host, (signal) =>
      doFetch(url, { method: request.method, headers, redirect: "manual", signal, ...tls }),
    );
    const location = response.headers.get("location");
    if (response.status < 300 || response.status >= 400 || response.status === 304 || location === null)
      return { response, url };
    await response.body?.cancel();
    url = new URL(location, url).href;
    if (!url.startsWith("http://") && !url.startsWith("https://")) {
      throw new RegistryError(
        `Cannot follow redirect from "${request.host}": unsupported location "${location.slice(0, 80)}"`,
        { kind: "protocol" },
      );
    }
  }
  throw new RegistryError(`Cannot fetch from "${request.host}": more than ${maxRedirects} redirects`, {
    kind: "protocol",
  });
}

async function withTimeout(
  timeoutMs: number,
  host: string,
  run: (signal: AbortSignal) => Promise<Response>,
): Promise<Response> {
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(
        new RegistryError(`Cannot reach "${host}": no response within ${formatDuration(timeoutMs)}`, {
          kind: "timeout",
        }),
      ),
    timeoutMs,
  );
  try {
    return await run(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Seconds or an HTTP date (RFC 9110, section 10.2.3), as milliseconds from now. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Turn a network failure into the one-line error a user can act on. */
function toRegistryError(error: unknown, host: string): RegistryError {
  if (error instanceof RegistryError) return error;
  const code = (error as { code?: string }).code ?? "";
  if (isTlsError(error)) {
    return new RegistryError(
      `Cannot verify the TLS certificate of "${host}": ${TLS_REASONS[code] ?? code} (trust its CA with --ca-file ` +
        `FILE, or "ca" for this host in the config)`,
      { kind: "tls", cause: error },
    );
  }
  const reason = NETWORK_REASONS[code] ?? (error instanceof Error ? error.message : String(error));
  return new RegistryError(`Cannot reach "${host}": ${reason}`, {
    kind: "unreachable",
    cause: error,
  });
}

/**
 * Nobody listens there, or the name does not resolve: retrying would only
 * delay the fallback to the cache (a registry that is down must cost next to
 * nothing); a reset or a close midway is retried.
 */
function isRefused(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? "";
  return code === "ConnectionRefused" || code === "ECONNREFUSED" || code === "ENOTFOUND";
}

/** A certificate problem: not transient, so never retried. */
function isTlsError(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? "";
  return code in TLS_REASONS || /CERT|SELF_SIGNED|TLS/.test(code);
}

const TLS_REASONS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: "it is self-signed",
  SELF_SIGNED_CERT_IN_CHAIN: "its chain ends in a self-signed CA that is not trusted",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "it is signed by a CA that is not trusted",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "it is signed by a CA that is not trusted",
  UNABLE_TO_GET_ISSUER_CERT: "it is signed by a CA that is not trusted",
  CERT_HAS_EXPIRED: "it has expired",
  ERR_TLS_CERT_ALTNAME_INVALID: "it does not name this host",
};

const NETWORK_REASONS: Record<string, string> = {
  ConnectionRefused: "connection refused",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ConnectionClosed: "connection closed",
  ENOTFOUND: "host not found",
  FailedToOpenSocket: "cannot open a socket",
  ETIMEDOUT: "timed out",
};
