/**
 * Registry credentials, kept where the ecosystem keeps them: the docker
 * `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), or its whole content in
 * `$DOCKER_AUTH_CONFIG`, with its `credHelpers` and `credsStore` asked through
 * the `docker-credential-*` protocol (docker-credential-helpers: `get`, the
 * server on stdin, JSON on stdout). Secrets never appear in a message.
 *
 * @module
 */

import { join } from "node:path";
import { isErrno, UsageError } from "../errors.ts";
import { homeDir } from "../home.ts";
import { canonicalRegistry, DOCKER_HUB } from "../oci/host.ts";
import { MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";

/** A username and password (or token) for one registry. */
export interface Credentials {
  username: string;
  password: string;
}

/** Where to look for credentials. */
export interface CredentialOptions {
  /** The environment to read `DOCKER_CONFIG` and `DOCKER_AUTH_CONFIG` from. @default process.env */
  env?: Record<string, string | undefined>;
}

/**
 * Find the credentials stored for a registry host, or `undefined`.
 *
 * @throws {UsageError} when the docker config exists but is not valid JSON.
 * @example
 * ```ts
 * import { findCredentials } from "./credentials.ts";
 * const credentials = findCredentials("127.0.0.1:5000");
 * console.log(credentials === undefined ? "anonymous" : "with credentials");
 * ```
 */
export function findCredentials(host: string, options: CredentialOptions = {}): Credentials | undefined {
  const env = options.env ?? process.env;
  const config = loadDockerConfig(env);
  if (config === undefined) return undefined;
  const wanted = normaliseHost(host);
  const helper =
    Object.entries(config.credHelpers ?? {}).find(([key]) => normaliseHost(key) === wanted)?.[1] ?? config.credsStore;
  if (typeof helper === "string" && helper !== "") return askHelper(helper, wanted, env);
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (normaliseHost(key) !== wanted || typeof entry !== "object" || entry === null) continue;
    const credentials = decodeEntry(entry as AuthEntry);
    if (credentials !== undefined) return credentials;
  }
  return undefined;
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
}

interface DockerConfig {
  auths?: Record<string, unknown>;
  credHelpers?: Record<string, unknown>;
  credsStore?: unknown;
}

/**
 * `docker-credential-<helper> get`: the server on stdin, `{Username, Secret}`
 * on stdout; a helper that knows nothing of the server exits non-zero.
 *
 * @throws {UsageError} when the helper is not on the PATH or answers nonsense.
 */
function askHelper(helper: string, host: string, env: Record<string, string | undefined>): Credentials | undefined {
  if (!/^[A-Za-z0-9._-]+$/.test(helper))
    throw new UsageError(`Cannot use the credential helper "${helper.slice(0, 40)}": not a helper name`);
  const program = `docker-credential-${helper}`;
  const server = host === DOCKER_HUB ? "https://index.docker.io/v1/" : host;
  let result: ReturnType<typeof Bun.spawnSync>;
  try {
    result = Bun.spawnSync([program, "get"], {
      stdin: new TextEncoder().encode(server),
      stdout: "pipe",
      stderr: "pipe",
      env: env as Record<string, string>,
    });
  } catch (cause) {
    throw new UsageError(`Cannot run the credential helper "${program}": it is not on the PATH`, { cause });
  }
  if (result.exitCode !== 0) return undefined;
  try {
    const answer = JSON.parse(String(result.stdout ?? "")) as { Username?: unknown; Secret?: unknown };
    if (typeof answer.Username === "string" && typeof answer.Secret === "string" && answer.Secret !== "") {
      return { username: answer.Username, password: answer.Secret };
    }
  } catch {
    // Reported below without echoing what the helper printed: it may hold the secret.
  }
  throw new UsageError(`Cannot use the credential helper "${program}": it did not answer with {Username, Secret}`);
}

function loadDockerConfig(env: Record<string, string | undefined>): DockerConfig | undefined {
  let text = env.DOCKER_AUTH_CONFIG;
  let where = "$DOCKER_AUTH_CONFIG";
  if (text === undefined || text === "") {
    where = join(env.DOCKER_CONFIG || join(homeDir(env), ".docker"), "config.json");
    try {
      text = readFileBounded(where, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8");
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR", "EACCES")) return undefined;
      throw new UsageError(`Cannot read credentials from "${where}": ${describeReadError(error)}`, { cause: error });
    }
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null ? (parsed as DockerConfig) : {};
  } catch (cause) {
    throw new UsageError(`Cannot read credentials from "${where}": it is not valid JSON`, { cause });
  }
}

function decodeEntry(entry: AuthEntry): Credentials | undefined {
  if (typeof entry.username === "string" && typeof entry.password === "string" && entry.username !== "") {
    return { username: entry.username, password: entry.password };
  }
  if (typeof entry.auth !== "string" || entry.auth === "") return undefined;
  const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** `https://index.docker.io/v1/` and `docker.io` name the same registry. */
function normaliseHost(key: string): string {
  return canonicalRegistry(
    key
      .replace(/^[a-z]+:\/\//i, "")
      .replace(/\/.*$/, "")
      .toLowerCase(),
  );
}
