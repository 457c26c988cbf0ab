/**
 * The registry auth challenge (distribution spec, "token authentication"):
 * `WWW-Authenticate: Basic` or `Bearer realm=…,service=…,scope=…`, answered
 * with basic credentials or a token from the realm, anonymous or with
 * credentials. Secrets never appear in a message.
 *
 * @module
 */

import { AuthError, RegistryError } from "../errors.ts";
import { DEFAULT_IDLE_TIMEOUT_MS, MAX_CHALLENGE_BYTES } from "../oci/limits.ts";
import { readBounded } from "./body.ts";
import type { Credentials } from "./credentials.ts";
import { sendRequest, type TransportOptions } from "./transport.ts";

/** Where a challenge came from and what may answer it. */
export interface ChallengeContext {
  /** The registry host, for messages. */
  host: string;
  /**
   * The URL of the registry endpoint that sent the challenge: a token realm over plain HTTP is refused for an HTTPS
   * one.
   */
  url: string;
  repository: string;
  credentials: Credentials | undefined;
  transport?: TransportOptions;
}

/**
 * The `Authorization` header that answers a challenge. The caller answers
 * only a challenge from the endpoint the credentials belong to, never one a
 * redirect target sent.
 *
 * @throws {AuthError} when credentials are needed and missing, refused by the token server, or the
 *   challenge is refused.
 * @throws {RegistryError} when the token server fails.
 * @example
 * ```ts
 * import { answerChallenge } from "./challenge.ts";
 * const credentials = { username: "u", password: "p" };
 * const context = { host: "r.example", url: "https://r.example/v2/", repository: "a/b", credentials };
 * const header = await answerChallenge('Basic realm="r"', context);
 * ```
 */
export async function answerChallenge(header: string, context: ChallengeContext): Promise<string> {
  const { host, credentials } = context;
  if (header.length > MAX_CHALLENGE_BYTES) {
    throw new AuthError(
      `Cannot pull from "${host}": its authentication challenge is larger than ${MAX_CHALLENGE_BYTES} bytes`,
      { reason: "challenge", status: 401 },
    );
  }
  const challenge = parseChallenge(header);
  if (challenge.scheme === "basic") {
    if (credentials === undefined) {
      throw new AuthError(
        `Cannot pull from "${host}": it requires credentials (add them to the docker config.json or to the host in ` +
          `the config)`,
        { reason: "missing", status: 401 },
      );
    }
    return basic(credentials);
  }
  if (challenge.scheme !== "bearer" || challenge.params.realm === undefined) {
    throw new AuthError(`Cannot pull from "${host}": unsupported authentication challenge "${header.slice(0, 60)}"`, {
      reason: "challenge",
      status: 401,
    });
  }
  return `Bearer ${await fetchToken(challenge.params, context)}`;
}

/**
 * Parse `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (RFC 9110,
 * section 11.6.1) in one pass: time linear in the header's length, whatever
 * it holds. Malformed parameters are skipped.
 *
 * @example
 * ```ts
 * import { parseChallenge } from "./challenge.ts";
 * console.log(parseChallenge('Bearer realm="https://auth.example/token",service="r"').params.realm);
 * ```
 */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const params: Record<string, string> = {};
  let i = 0;
  const skip = (chars: string) => {
    while (i < header.length && chars.includes(header[i]!)) i++;
  };
  const token = (chars: RegExp) => {
    const start = i;
    while (i < header.length && chars.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  skip(" \t");
  const scheme = token(TOKEN_CHAR).toLowerCase();
  while (i < header.length) {
    skip(" \t,");
    const name = token(TOKEN_CHAR).toLowerCase();
    skip(" \t");
    if (name === "" || header[i] !== "=") {
      // Not a parameter: go on after the next comma.
      while (i < header.length && header[i] !== ",") i++;
      continue;
    }
    i++;
    skip(" \t");
    let value = "";
    if (header[i] === '"') {
      i++;
      while (i < header.length && header[i] !== '"') {
        if (header[i] === "\\" && i + 1 < header.length) i++;
        value += header[i];
        i++;
      }
      i++;
    } else {
      value = token(VALUE_CHAR);
    }
    params[name] = value;
  }
  return { scheme, params };
}

/** RFC 9110's `tchar`. */
const TOKEN_CHAR = /[A-Za-z0-9!#$%&'*+.^_`|~-]/;
/** An unquoted value: a token, or token68 (`=` padding), or a URL that should have been quoted. */
const VALUE_CHAR = /[^\s,]/;

function basic(credentials: Credentials): string {
  return `Basic ${btoa(`${credentials.username}:${credentials.password}`)}`;
}

async function fetchToken(params: Record<string, string>, context: ChallengeContext): Promise<string> {
  const { host, credentials } = context;
  let realm: URL;
  try {
    realm = new URL(params.realm!);
  } catch {
    throw new AuthError(`Cannot pull from "${host}": the token realm "${params.realm!.slice(0, 80)}" is not a URL`, {
      reason: "challenge",
    });
  }
  if (realm.protocol !== "https:" && realm.protocol !== "http:") {
    throw new AuthError(`Cannot pull from "${host}": the token realm "${realm.href.slice(0, 80)}" is not an HTTP URL`, {
      reason: "challenge",
    });
  }
  if (realm.protocol === "http:" && new URL(context.url).protocol === "https:") {
    throw new AuthError(
      `Cannot pull from "${host}": it names a token realm over plain HTTP ("${realm.host}"), which would expose its ` +
        `credentials`,
      { reason: "challenge" },
    );
  }
  if (params.service !== undefined) realm.searchParams.set("service", params.service);
  realm.searchParams.set("scope", params.scope ?? `repository:${context.repository}:pull`);
  const headers: Record<string, string> = credentials === undefined ? {} : { Authorization: basic(credentials) };
  const { response } = await sendRequest(
    { url: realm.href, method: "GET", headers, host: realm.host },
    context.transport,
  );
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    throw new AuthError(
      `Cannot pull from "${host}": the token server refused ` +
        `${credentials === undefined ? "anonymous access" : "the credentials"} (${response.status})`,
      { reason: "refused", status: response.status },
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new RegistryError(`Cannot get a token for "${host}": the token server answered ${response.status}`, {
      status: response.status,
    });
  }
  const text = new TextDecoder().decode(
    await readBounded(response, MAX_TOKEN_RESPONSE_BYTES, "token response", {
      idleTimeoutMs: context.transport?.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    }),
  );
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text);
  } catch (cause) {
    throw new AuthError(`Cannot pull from "${host}": the token server sent no JSON`, { reason: "token", cause });
  }
  const token = body?.token ?? body?.access_token;
  if (typeof token !== "string" || token === "")
    throw new AuthError(`Cannot pull from "${host}": the token server sent no token`, { reason: "token" });
  return token;
}

/** The largest token response read. */
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
