/**
 * Registry credentials, kept where the ecosystem keeps them: the docker
 * `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), or its whole content in
 * `$DOCKER_AUTH_CONFIG`. Secrets never appear in a message.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { homeDir } from "./home.ts";
import { isErrno, UsageError } from "./errors.ts";

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
 * import { findCredentials } from "./auth.ts";
 * const credentials = findCredentials("127.0.0.1:5000");
 * console.log(credentials === undefined ? "anonymous" : "with credentials");
 * ```
 */
export function findCredentials(host: string, options: CredentialOptions = {}): Credentials | undefined {
  const env = options.env ?? process.env;
  const config = loadDockerConfig(env);
  if (config === undefined) return undefined;
  const wanted = normaliseHost(host);
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
}

function loadDockerConfig(env: Record<string, string | undefined>): DockerConfig | undefined {
  let text = env.DOCKER_AUTH_CONFIG;
  let where = "$DOCKER_AUTH_CONFIG";
  if (text === undefined || text === "") {
    where = join(env.DOCKER_CONFIG || join(homeDir(env), ".docker"), "config.json");
    try {
      text = readFileSync(where, "utf8");
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR", "EACCES")) return undefined;
      throw error;
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
  const host = key.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
  return host === "index.docker.io" || host === "registry-1.docker.io" ? "docker.io" : host;
}
