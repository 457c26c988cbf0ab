/**
 * The config file, validated with zod: a JSON object whose keys are those of
 * `KEYS` in `config.ts`; unknown keys and values of the wrong type are errors
 * that name the key. Loaded only when a config file exists.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { z } from "zod";
import { UsageError } from "../errors.ts";
import { HOST_RE, type RegistrySettings } from "../oci/host.ts";

const text = z.string().min(1);
const HOST = z.string().regex(HOST_RE, "expected a registry host such as registry.example:5000");
const HOST_SETTINGS = {
  insecure: z.boolean().optional(),
  ca: text.optional(),
  username: text.optional(),
  password: z.string().optional(),
};
const MIRROR = z.strictObject({
  host: HOST,
  capabilities: z
    .array(z.enum(["pull", "resolve"]))
    .min(1)
    .optional(),
  path: z
    .string()
    .regex(/^\/v2(\/[a-z0-9._-]+)*\/?$/, "expected /v2 or /v2/<project>")
    .optional(),
  ...HOST_SETTINGS,
});
const REGISTRY = z.strictObject({ mirrors: z.array(MIRROR).optional(), ...HOST_SETTINGS });
const SCHEMA = z.strictObject({
  cacheDir: text.optional(),
  maxAge: text.optional(),
  maxSize: z.union([text, z.number().int().nonnegative()]).optional(),
  grace: text.optional(),
  autoCleanInterval: text.optional(),
  freshFor: text.optional(),
  offline: z.boolean().optional(),
  insecureRegistries: z.array(text).optional(),
  concurrency: z.number().int().min(1).max(64).optional(),
  connectTimeout: text.optional(),
  idleTimeout: text.optional(),
  lowSpeedLimit: z.union([text, z.number().int().nonnegative()]).optional(),
  lowSpeedTime: text.optional(),
  lockTimeout: text.optional(),
  listen: text.optional(),
  allowedHosts: z.array(HOST).optional(),
  htpasswd: text.optional(),
  publicMirror: z.boolean().optional(),
  maxConcurrentDownloads: z.number().int().min(1).max(100_000).optional(),
  maxConnections: z.number().int().min(1).max(100_000).optional(),
  clientBuffer: z.union([text, z.number().int().positive()]).optional(),
  upstream: text.optional(),
  mirrors: z.array(HOST).optional(),
  caFile: text.optional(),
  registries: z.record(HOST, REGISTRY).optional(),
});

/**
 * Read and check a config file; values come back as strings for the common
 * parsers, which check durations and sizes, and the per-registry settings
 * as they are.
 *
 * @throws {UsageError} when the file is missing, not JSON, or has a bad key or value.
 * @example
 * ```ts
 * import { readConfigFile } from "./config-file.ts";
 * const file = (() => { try { return readConfigFile("/etc/ocicache.json"); } catch { return undefined; } })();
 * ```
 */
export function readConfigFile(path: string): {
  raw: Record<string, string>;
  registries: Record<string, RegistrySettings>;
} {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code === "ENOENT" ? "it does not exist" : "it is not valid JSON";
    throw new UsageError(`Cannot load config "${path}": ${reason}`, { cause });
  }
  const result = SCHEMA.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.code === "unrecognized_keys" ? issue.keys.join(", ") : issue.path.join(".") || "(top level)";
    const reason = issue.code === "unrecognized_keys" ? "unknown key" : issue.message;
    throw new UsageError(`Cannot load config "${path}": "${key}": ${reason}`);
  }
  const { registries, ...rest } = result.data;
  const raw: Record<string, string> = {};
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined) raw[key] = Array.isArray(value) ? value.join(",") : String(value);
  }
  return { raw, registries: (registries ?? {}) as Record<string, RegistrySettings> };
}
