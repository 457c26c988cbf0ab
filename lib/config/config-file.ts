/**
 * The config file, validated with zod: a JSON object whose keys are those of
 * `KEYS` in `settings.ts` (and `"$schema"`, for editors). Every problem is found, each named by its full key
 * path (`registries["ghcr.io"].mirrors[0].host`), an unknown key with the
 * key it may have meant, JSON that does not parse by line and column.
 * Loaded only when a config file exists.
 *
 * @module
 */

import { z } from "zod";
import { UsageError } from "../errors.ts";
import { HOST_RE, type MirrorSettings, type RegistrySettings } from "../oci/host.ts";
import { MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import { closest } from "../suggest.ts";
import { describeSyntaxError } from "./json-position.ts";
import { KEYS, REGISTRIES_MEANING } from "./settings.ts";

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
/** A mirror is a host, or an object with its host and settings: both forms, wherever mirrors are listed. */
const MIRRORS = z.array(z.preprocess((value) => (typeof value === "string" ? { host: value } : value), MIRROR));
const REGISTRY = z.strictObject({ mirrors: MIRRORS.optional(), ...HOST_SETTINGS });
const SCHEMA = z.strictObject({
  $schema: z.string().optional(),
  cacheDir: text.optional(),
  maxAge: text.optional(),
  maxSize: z.union([text, z.number().int().nonnegative()]).optional(),
  grace: text.optional(),
  autoCleanInterval: text.optional(),
  freshFor: text.optional(),
  offline: z.boolean().optional(),
  insecureRegistries: z.array(HOST).optional(),
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
  mirrors: MIRRORS.optional(),
  caFile: text.optional(),
  lockFile: text.optional(),
  policy: text.optional(),
  registries: z.record(HOST, REGISTRY).optional(),
});

/** What a valid config file holds. */
export interface ConfigFile {
  /** Values as strings, for the common parsers that check durations and sizes. */
  raw: Record<string, string>;
  registries: Record<string, RegistrySettings>;
  /** The mirrors for every registry, when the file lists them. */
  mirrors?: MirrorSettings[];
}

/**
 * Read and check a config file.
 *
 * @throws {UsageError} when the file is missing, not JSON, or has a bad key or value: the first problem, and how
 * many more there are.
 * @example
 * ```ts
 * import { readConfigFile } from "./config-file.ts";
 * const file = (() => { try { return readConfigFile("/etc/ocicache.json"); } catch { return undefined; } })();
 * ```
 */
export function readConfigFile(path: string): ConfigFile {
  const checked = checkConfigFile(path);
  if ("problems" in checked) {
    const more = checked.problems.length - 1;
    const rest = more > 0 ? ` (and ${more} more: ocicache doctor lists them)` : "";
    throw new UsageError(`Cannot load config "${path}": ${checked.problems[0]}${rest}`);
  }
  return checked.file;
}

/**
 * Check a config file: what it holds, or every problem, each one line naming its key path (or line and column).
 *
 * @example
 * ```ts
 * import { checkConfigFile } from "./config-file.ts";
 * const checked = checkConfigFile("/etc/ocicache.json");
 * if ("problems" in checked) console.log(checked.problems.join("\n"));
 * ```
 */
export function checkConfigFile(path: string): { file: ConfigFile } | { problems: string[] } {
  let text: string;
  try {
    text = readFileBounded(path, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8");
  } catch (cause) {
    return { problems: [describeReadError(cause)] };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { problems: [`it is not valid JSON: ${describeSyntaxError(text)}`] };
  }
  const result = SCHEMA.safeParse(json);
  if (!result.success) return { problems: result.error.issues.flatMap(describeIssue) };
  const { registries, mirrors, $schema: _schema, ...rest } = result.data;
  const raw: Record<string, string> = {};
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined) raw[key] = Array.isArray(value) ? value.join(",") : String(value);
  }
  return {
    file: {
      raw,
      registries: (registries ?? {}) as Record<string, RegistrySettings>,
      ...(mirrors !== undefined && { mirrors: mirrors as MirrorSettings[] }),
    },
  };
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
  if (issue.code !== "unrecognized_keys") return [`${keyPath(issue.path)}: ${issue.message}`];
  const known = keysAt(issue.path);
  return issue.keys.map((key) => {
    const near = closest(key, known);
    return `${keyPath([...issue.path, key])}: unknown key${near === undefined ? "" : ` (did you mean "${near}"?)`}`;
  });
}

/** The keys the object at `path` may have. */
function keysAt(path: PropertyKey[]): string[] {
  const names = path.filter((part) => typeof part === "string");
  if (names.length === 0) return Object.keys(SCHEMA.shape);
  if (names.at(-1) === "mirrors") return Object.keys(MIRROR.shape);
  if (names[0] === "registries" && names.length === 2) return Object.keys(REGISTRY.shape);
  return [];
}

/** `registries["ghcr.io"].mirrors[0].host`: the key path as it would be written in JavaScript. */
function keyPath(path: PropertyKey[]): string {
  if (path.length === 0) return "(the top level)";
  return path
    .map((part, i) =>
      typeof part === "number"
        ? `[${part}]`
        : /^[A-Za-z_$][\w$]*$/.test(String(part))
          ? `${i === 0 ? "" : "."}${String(part)}`
          : `[${JSON.stringify(String(part))}]`,
    )
    .join("");
}

/** Where the JSON Schema of the config file is published with the package, for a config file's `"$schema"`. */
export const CONFIG_SCHEMA_FILE = "config.schema.json";

/**
 * The JSON Schema of the config file, from the same zod schema that checks it, each key described by its meaning
 * in `settings.ts`, a mirror either a host or an object: what `config.schema.json` holds
 * (`bun scripts/gen-config.ts` writes it; a test checks it is current).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { configJsonSchema } from "./config-file.ts";
 * const schema = configJsonSchema() as { properties: Record<string, { description?: string }> };
 * assert.equal(schema.properties.offline!.description, "never contact a registry");
 * ```
 */
export function configJsonSchema(): object {
  const schema = z.toJSONSchema(SCHEMA, { io: "input" }) as {
    properties: Record<string, Record<string, unknown>>;
  };
  schema.properties.$schema!.description =
    `The JSON Schema of this file (${CONFIG_SCHEMA_FILE} in the ocicache package)`;
  for (const [key, setting] of Object.entries(KEYS)) schema.properties[key]!.description = setting.meaning;
  schema.properties.registries!.description = REGISTRIES_MEANING;
  const { $schema: _dialect, ...host } = z.toJSONSchema(HOST);
  const hostOrMirror = (mirrors: Record<string, unknown>) => {
    mirrors.items = { anyOf: [host, mirrors.items] };
  };
  hostOrMirror(schema.properties.mirrors!);
  const registry = schema.properties.registries!.additionalProperties as { properties: Record<string, object> };
  hostOrMirror(registry.properties.mirrors as Record<string, unknown>);
  return { ...schema, title: "ocicache config.json" };
}
