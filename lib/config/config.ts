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
import type { MirrorSettings, RegistrySettings } from "../oci/host.ts";
import { KEYS, type Setting, type SettingKey, type SettingValues, settingDefaults } from "./settings.ts";

/**
 * Every setting, resolved: each setting's field of the table in `settings.ts`, in the units its parser gives
 * (`maxAgeMs` milliseconds, `maxSizeBytes` bytes), and what only the config file holds.
 */
export type Config = Omit<SettingValues, "cacheDir"> & {
  /** The cache directory. */
  cacheDir: string;
  /** Per registry: its mirrors, TLS, CA and credentials (config file only). */
  registries: Record<string, RegistrySettings>;
  /** The config file that was read, if any. */
  configFile: string | undefined;
};

export { KEYS };

/** Settings as strings, the way flags, env and the file give them. */
export type RawConfig = Partial<Record<SettingKey, string>>;

/** The defaults, in the units of `Config`: each setting's default through its own parser. */
export const DEFAULTS: Omit<Config, "cacheDir"> = {
  ...(settingDefaults() as Omit<SettingValues, "cacheDir">),
  registries: {},
  configFile: undefined,
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
  for (const [key, { flag }] of Object.entries(KEYS) as Array<[SettingKey, Setting]>) {
    const value = flag === undefined ? undefined : flags[flag.name];
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
  const settings: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(KEYS) as Array<[SettingKey, Setting]>) {
    const fallback = (DEFAULTS as Record<string, unknown>)[setting.field];
    // The file's mirrors are objects with their settings, not a list of hosts: they are the mirrors' fallback.
    settings[setting.field] = value(key, key === "mirrors" ? (fileMirrors ?? fallback) : fallback);
  }
  settings.cacheDir = value("cacheDir", join(env.XDG_CACHE_HOME || join(homeDir(env), ".cache"), "ocicache"));
  return { ...(settings as SettingValues), cacheDir: settings.cacheDir as string, registries, configFile: path };
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
  const pick = (key: SettingKey) => {
    const setting: Setting = KEYS[key];
    const variable = env[setting.env];
    for (const [source, raw] of [
      [setting.flag === undefined ? key : `--${setting.flag.name}`, sources.flags?.[key]],
      [setting.env, variable === "" ? undefined : variable],
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
