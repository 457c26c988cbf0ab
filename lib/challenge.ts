/**
 * The registry auth challenge (distribution spec, "token authentication"):
 * `WWW-Authenticate: Basic` or `Bearer realm=…,service=…,scope=…`, answered
 * with basic credentials or a token from the realm, anonymous or with
 * credentials. Secrets never appear in a message.
 *
 * @module
 */

import type { Credentials } from "./auth.ts";
import { AuthError, IntegrityError, RegistryError } from "./errors.ts";
import { sendRequest, type TransportOptions } from "./transport.ts";

/**
 * The `Authorization` header that answers a challenge.
 *
 * @throws {AuthError} when credentials are needed and missing, or refused by the token server.
 * @throws {RegistryError} when the token server fails.
 * @example
 * ```ts
 * import { answerChallenge } from "./challenge.ts";
 * const header = await answerChallenge('Basic realm="r"', { host: "r.example", repository: "a/b", credentials: { username: "u", password: "p" } });
 * ```
 */
export async function answerChallenge(
  header: string,
  context: { host: string; repository: string; credentials: Credentials | undefined; transport?: TransportOptions },
): Promise<string> {
  const challenge = parseChallenge(header);
  const { host, credentials } = context;
  if (challenge.scheme === "basic") {
    if (credentials === undefined) {
      throw new AuthError(`Cannot pull from "${host}": it requires credentials (add them to the docker config.json or to the host in the config)`, { status: 401 });
    }
    return basic(credentials);
  }
  if (challenge.scheme !== "bearer" || challenge.params.realm === undefined) {
    throw new AuthError(`Cannot pull from "${host}": unsupported authentication challenge "${header.slice(0, 60)}"`, { status: 401 });
  }
  return `Bearer ${await fetchToken(challenge.params, context)}`;
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

function basic(credentials: Credentials): string {
  return `Basic ${btoa(`${credentials.username}:${credentials.password}`)}`;
}

async function fetchToken(
  params: Record<string, string>,
  context: { host: string; repository: string; credentials: Credentials | undefined; transport?: TransportOptions },
): Promise<string> {
  const { host, credentials } = context;
  let realm: URL;
  try {
    realm = new URL(params.realm!);
  } catch {
    throw new AuthError(`Cannot pull from "${host}": the token realm "${params.realm!.slice(0, 80)}" is not a URL`);
  }
  if (params.service !== undefined) realm.searchParams.set("service", params.service);
  realm.searchParams.set("scope", params.scope ?? `repository:${context.repository}:pull`);
  const headers: Record<string, string> = credentials === undefined ? {} : { Authorization: basic(credentials) };
  const response = await sendRequest({ url: realm.href, method: "GET", headers, host: realm.host }, context.transport);
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    throw new AuthError(`Cannot pull from "${host}": the token server refused ${credentials === undefined ? "anonymous access" : "the credentials"} (${response.status})`, { status: response.status });
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new RegistryError(`Cannot get a token for "${host}": the token server answered ${response.status}`, { status: response.status });
  }
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(new TextDecoder().decode(await readBounded(response, 1024 * 1024, "token response")));
  } catch (cause) {
    throw new AuthError(`Cannot pull from "${host}": the token server sent no JSON`, { cause });
  }
  const token = body.token ?? body.access_token;
  if (typeof token !== "string" || token === "") throw new AuthError(`Cannot pull from "${host}": the token server sent no token`);
  return token;
}
