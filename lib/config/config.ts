/**
 * Configuration from flags, the environment (`OCICACHE_*`) and a config file
 * (`$XDG_CONFIG_HOME/ocicache/config.json` or `--config`), with precedence
 * flags > env > file > defaults. Flags and env are checked by hand here; the
 * file is validated with zod in `config-file.ts`, loaded only when a file
 * exists, so a cache hit without one never loads zod.
 *
 * @module
 */

import { statSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { configDir, homeDir } from "../home.ts";
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_LOW_SPEED_BYTES_PER_SECOND,
  DEFAULT_LOW_SPEED_WINDOW_MS,
} from "../oci/limits.ts";
import type { MirrorSettings, RegistrySettings } from "../oci/host.ts";
import { KEYS } from "./settings.ts";

/** Every setting, resolved. */
export interface Config {
  /** The cache directory. */
  cacheDir: string;
  /** Remove what was not used for this long (milliseconds). */
  maxAgeMs: number;
  /** Evict the least recently used until the cache is at most this large (bytes). */
  maxSizeBytes: number;
  /** Never remove what was used this recently (milliseconds). */
  graceMs: number;
  /** Clean automatically after a pull that fetched something, at most this often; 0 turns it off. */
  autoCleanIntervalMs: number;
  /** Trust a tag confirmed this recently (milliseconds). */
  freshForMs: number;
  /** Never contact a registry. */
  offline: boolean;
  /** Hosts spoken to over plain HTTP. */
  insecureRegistries: string[];
  /** Layers downloaded at once. */
  concurrency: number;
  /** How long a registry may take to answer (connection and headers). */
  connectTimeoutMs: number;
  /** How long a download may receive nothing before it fails. */
  idleTimeoutMs: number;
  /** A blob download slower than this (bytes per second, on average over `lowSpeedTimeMs`) fails; 0 turns it off. */
  lowSpeedLimitBytes: number;
  /** The time over which `lowSpeedLimitBytes` is measured. */
  lowSpeedTimeMs: number;
  /** How long to wait for another process downloading the same blob. */
  lockTimeoutMs: number;
  /** Where `serve` listens: `host:port`. */
  listen: string;
  /** `Host` names `serve` answers besides its listen address and loopback names (DNS rebinding). */
  allowedHosts: string[];
  /** An htpasswd file (bcrypt entries): `serve` then asks for Basic credentials on every route but health. */
  htpasswd: string | undefined;
  /** Serve the mirror on a non-loopback address without client credentials. */
  publicMirror: boolean;
  /** The mirror's upstream blob downloads at once; further misses wait their turn. */
  maxConcurrentDownloads: number;
  /** The mirror's blob responses in progress at once; past it clients are told to retry (429). */
  maxConnections: number;
  /** Bytes the mirror reads at once for one client (a blob response holds at most two such chunks). */
  clientBufferBytes: number;
  /** The registry the `serve` mirror pulls through, if any. */
  upstream: string | undefined;
  /** Mirrors tried in order for every registry, before the registry itself (a host, or a host with settings). */
  mirrors: MirrorSettings[];
  /** A PEM file of a CA to trust for every TLS registry. */
  caFile: string | undefined;
  /** Per registry: its mirrors, TLS, CA and credentials (config file only). */
  registries: Record<string, RegistrySettings>;
  /** The config file that was read, if any. */
  configFile: string | undefined;
  /** The lock file pulls use, if any; `lock` writes `ocicache.lock` when none is set. */
  lockFile: string | undefined;
}

export { KEYS };

/** Settings as strings, the way flags, env and the file give them. */
export type RawConfig = Partial<Record<keyof typeof KEYS, string>>;

/** The defaults, in the units of `Config`. */
export const DEFAULTS: Omit<Config, "cacheDir"> = {
  maxAgeMs: 30 * 86_400_000,
  maxSizeBytes: 10 * 2 ** 30,
  graceMs: 10 * 60_000,
  autoCleanIntervalMs: 24 * 3_600_000,
  freshForMs: 0,
  offline: false,
  insecureRegistries: [],
  concurrency: 4,
  connectTimeoutMs: 30_000,
  idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
  lowSpeedLimitBytes: DEFAULT_LOW_SPEED_BYTES_PER_SECOND,
  lowSpeedTimeMs: DEFAULT_LOW_SPEED_WINDOW_MS,
  lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS,
  listen: "127.0.0.1:5050",
  allowedHosts: [],
  htpasswd: undefined,
  publicMirror: false,
  maxConcurrentDownloads: 8,
  maxConnections: 64,
  clientBufferBytes: 256 * 1024,
  upstream: undefined,
  mirrors: [],
  caFile: undefined,
  registries: {},
  configFile: undefined,
  lockFile: undefined,
};

/**
 * The settings given as flags, by key: each key's flag in `flags` (parsed options by long name), a string as it is,
 * a switch as `"true"`, a repeated option's values joined with commas, as its variable would give them.
 *
 * @example
 * ```ts
 * import { flagSettings } from "./config.ts";
 * console.log(flagSettings({ "fresh-for": "1h", offline: true, mirror: ["a.example", "b.example"] }));
 * // { freshFor: "1h", offline: "true", mirrors: "a.example,b.example" }
 * ```
 */
export function flagSettings(flags: Record<string, unknown>): RawConfig {
  const raw: RawConfig = {};
  for (const [key, { flag }] of Object.entries(KEYS) as Array<[keyof typeof KEYS, { flag?: string }]>) {
    const value = flag === undefined ? undefined : flags[flag.slice(2)];
    if (typeof value === "string") raw[key] = value;
    else if (value === true) raw[key] = "true";
    else if (Array.isArray(value)) raw[key] = value.join(",");
  }
  return raw;
}

/** Where settings come from. */
export interface ConfigSources {
  /** Settings given as flags. */
  flags?: RawConfig;
  /** `--config`: a file that must exist. */
  configPath?: string;
  /** The environment. @default process.env */
  env?: Record<string, string | undefined>;
  /** Leave the config file out (`doctor`, which diagnoses a file that does not load). */
  skipFile?: boolean;
}

/** The config file that `sources` name, or the default one when it exists. */
export function configFileFor(sources: ConfigSources = {}): string | undefined {
  const env = sources.env ?? process.env;
  const named = sources.configPath ?? (env.OCICACHE_CONFIG || undefined);
  const path = named ?? join(configDir(env), "config.json");
  return named !== undefined || exists(path) ? path : undefined;
}

/**
 * Resolve the configuration. A config file is read only when one exists (or
 * `--config`/`OCICACHE_CONFIG` names one, which then must exist).
 *
 * @throws {UsageError} naming the key, its source and the bad value.
 * @example
 * ```ts
 * import { loadConfig } from "./config.ts";
 * const config = await loadConfig({ flags: { maxAge: "7d" } });
 * console.log(config.maxAgeMs); // 604800000
 * ```
 */
export async function loadConfig(sources: ConfigSources = {}): Promise<Config> {
  const env = sources.env ?? process.env;
  const path = sources.skipFile ? undefined : configFileFor(sources);
  const file = path === undefined ? undefined : (await import("./config-file.ts")).readConfigFile(path);
  const value = settingReader(sources, env, path, (file?.raw ?? {}) as RawConfig);
  const registries: Record<string, RegistrySettings> = file?.registries ?? {};
  const fileMirrors: MirrorSettings[] | undefined = file?.mirrors;
  return {
    cacheDir: value("cacheDir", join(env.XDG_CACHE_HOME || join(homeDir(env), ".cache"), "ocicache")),
    maxAgeMs: value("maxAge", DEFAULTS.maxAgeMs),
    maxSizeBytes: value("maxSize", DEFAULTS.maxSizeBytes),
    graceMs: value("grace", DEFAULTS.graceMs),
    autoCleanIntervalMs: value("autoCleanInterval", DEFAULTS.autoCleanIntervalMs),
    freshForMs: value("freshFor", DEFAULTS.freshForMs),
    offline: value("offline", DEFAULTS.offline),
    insecureRegistries: value("insecureRegistries", DEFAULTS.insecureRegistries),
    concurrency: value("concurrency", DEFAULTS.concurrency),
    connectTimeoutMs: value("connectTimeout", DEFAULTS.connectTimeoutMs),
    idleTimeoutMs: value("idleTimeout", DEFAULTS.idleTimeoutMs),
    lowSpeedLimitBytes: value("lowSpeedLimit", DEFAULTS.lowSpeedLimitBytes),
    lowSpeedTimeMs: value("lowSpeedTime", DEFAULTS.lowSpeedTimeMs),
    lockTimeoutMs: value("lockTimeout", DEFAULTS.lockTimeoutMs),
    listen: value("listen", DEFAULTS.listen),
    allowedHosts: value("allowedHosts", DEFAULTS.allowedHosts),
    htpasswd: value("htpasswd", DEFAULTS.htpasswd),
    publicMirror: value("publicMirror", DEFAULTS.publicMirror),
    maxConcurrentDownloads: value("maxConcurrentDownloads", DEFAULTS.maxConcurrentDownloads),
    maxConnections: value("maxConnections", DEFAULTS.maxConnections),
    clientBufferBytes: value("clientBuffer", DEFAULTS.clientBufferBytes),
    upstream: value("upstream", DEFAULTS.upstream),
    mirrors: value("mirrors", fileMirrors ?? DEFAULTS.mirrors),
    caFile: value("caFile", DEFAULTS.caFile),
    registries,
    configFile: path,
    lockFile: value("lockFile", DEFAULTS.lockFile),
  };
}

/**
 * Every problem of a config file that a command would refuse it for: its shape (zod, every key path) and then each
 * value through the parser of its key, as `loadConfig` reads it. What `doctor` reports.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { writeFileSync } from "node:fs";
 * import { configFileProblems } from "./config.ts";
 * writeFileSync("/tmp/ocicache-config-example.json", '{"maxAge":"forever"}');
 * const [problem] = await configFileProblems("/tmp/ocicache-config-example.json");
 * assert.match(problem!, /"maxAge"/);
 * ```
 */
export async function configFileProblems(path: string): Promise<string[]> {
  const { checkConfigFile } = await import("./config-file.ts");
  const checked = checkConfigFile(path);
  if ("problems" in checked) return checked.problems;
  const problems: string[] = [];
  for (const [key, raw] of Object.entries(checked.file.raw)) {
    const spec = (KEYS as Record<string, { parse: (value: string, what: string) => unknown }>)[key];
    try {
      spec?.parse(raw, `"${key}"`);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      problems.push(error.message.replace(/^Cannot parse /, ""));
    }
  }
  return problems;
}

/**
 * The value of a setting: its flag, else its variable, else the file's, parsed by its key's parser (a bad one is a
 * usage error naming where it came from), else `fallback`.
 */
function settingReader(
  sources: ConfigSources,
  env: Record<string, string | undefined>,
  path: string | undefined,
  file: RawConfig,
) {
  const pick = (key: keyof typeof KEYS) => {
    const variable = env[KEYS[key].env];
    for (const [source, raw] of [
      [KEYS[key].flag ?? key, sources.flags?.[key]],
      [KEYS[key].env, variable === "" ? undefined : variable],
      [`"${key}" in ${path}`, file[key]],
    ] as const) {
      if (raw !== undefined) return { raw, source };
    }
    return undefined;
  };
  return <T>(key: keyof typeof KEYS, fallback: T): T => {
    const found = pick(key);
    if (found === undefined) return fallback;
    try {
      return KEYS[key].parse(found.raw, found.source) as T;
    } catch (error) {
      if (error instanceof UsageError) throw new UsageError(error.message.replace("Cannot parse", "Cannot use"));
      throw error;
    }
  };
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
