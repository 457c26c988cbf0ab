/**
 * Every setting, declared once: its key (in the config file), its flag, its `OCICACHE_*` variable, how its string is
 * parsed (the same parser for a flag, a variable and the file), its default as the docs write it, and what it means.
 * `config.ts` resolves them, `config-file.ts` checks the file and describes each key in the JSON Schema
 * (`config.schema.json`), and `docs/configuration.md`'s table is generated from here (`bun scripts/gen-config.ts`;
 * the test suite fails when either is out of date).
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { HOST_RE, type MirrorSettings } from "../oci/host.ts";
import { parseDuration, parseSize } from "../units.ts";

/** A setting's flag: its name, and how `options.ts` parses and documents it. */
export interface SettingFlag {
  name: string;
  type: "string" | "boolean";
  /** Given more than once, its values joined as its variable would give them. */
  multiple?: boolean;
  /** The placeholder of its value in the help. */
  value?: string;
  /** Its help line, without its default (added from the setting's). */
  help: string;
}

/** One setting. */
export interface Setting {
  /** Its field of `Config`, in the units its parser gives. */
  field: string;
  /** Its flag, when it has one. */
  flag: SettingFlag | undefined;
  /** Its environment variable. */
  env: string;
  /** Its value from a string (a flag, a variable, or the file's value as a string). */
  parse: (input: string, what: string) => unknown;
  /** Its default, as a flag would give it; none: unset (`cacheDir`'s is the XDG cache directory). */
  default: string | undefined;
  /** Its default as the docs write it, when not the plain value. */
  defaultDoc?: string;
  /** What it does, for the docs and the JSON Schema. */
  meaning: string;
}

/** Every setting, by its key in the config file. */
export const KEYS = {
  cacheDir: {
    field: "cacheDir",
    flag: {
      name: "cache-dir",
      type: "string",
      value: "DIR",
      help: "The cache (default: $OCICACHE_DIR, else $XDG_CACHE_HOME/ocicache)",
    },
    env: "OCICACHE_DIR",
    parse: (v: string) => v,
    default: undefined,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the shell's notation, as the docs print it
    defaultDoc: "`${XDG_CACHE_HOME:-~/.cache}/ocicache`",
    meaning: "the cache directory",
  },
  maxAge: {
    field: "maxAgeMs",
    flag: { name: "max-age", type: "string", value: "D", help: "Remove what was unused this long" },
    env: "OCICACHE_MAX_AGE",
    parse: parseDuration,
    default: "30d",
    meaning: "cleanup removes units unused for longer",
  },
  maxSize: {
    field: "maxSizeBytes",
    flag: { name: "max-size", type: "string", value: "SIZE", help: "Evict the least recently used down to SIZE" },
    env: "OCICACHE_MAX_SIZE",
    parse: parseSize,
    default: "10GiB",
    meaning: "cleanup then evicts the least recently used down to this",
  },
  grace: {
    field: "graceMs",
    flag: { name: "grace", type: "string", value: "D", help: "Never remove what was used this recently" },
    env: "OCICACHE_GRACE",
    parse: parseDuration,
    default: "10m",
    meaning: "never remove what was used this recently",
  },
  autoCleanInterval: {
    field: "autoCleanIntervalMs",
    flag: undefined,
    env: "OCICACHE_AUTO_CLEAN_INTERVAL",
    parse: parseDuration,
    default: "24h",
    meaning:
      "clean automatically after a pull that fetched something, at most this often (`serve`: on this interval, and " +
      "as soon as what it fetched may pass `maxSize`); `0` turns it off",
  },
  freshFor: {
    field: "freshForMs",
    flag: { name: "fresh-for", type: "string", value: "D", help: "Trust a tag checked within D (e.g. 10m)" },
    env: "OCICACHE_FRESH_FOR",
    parse: parseDuration,
    default: "0",
    meaning: "trust a tag confirmed this recently",
  },
  offline: {
    field: "offline",
    flag: { name: "offline", type: "boolean", help: "Never contact a registry" },
    env: "OCICACHE_OFFLINE",
    parse: parseBoolean,
    default: "false",
    meaning: "never contact a registry",
  },
  insecureRegistries: {
    field: "insecureRegistries",
    flag: {
      name: "insecure-registry",
      type: "string",
      multiple: true,
      value: "HOST",
      help: "Use plain HTTP for HOST (repeatable)",
    },
    env: "OCICACHE_INSECURE_REGISTRIES",
    parse: parseHosts,
    default: "",
    defaultDoc: "`[]`",
    meaning: "hosts spoken to over plain HTTP",
  },
  concurrency: {
    field: "concurrency",
    flag: { name: "concurrency", type: "string", value: "N", help: "Layers downloaded at once" },
    env: "OCICACHE_CONCURRENCY",
    parse: parseConcurrency,
    default: "4",
    meaning: "layers downloaded at once",
  },
  connectTimeout: {
    field: "connectTimeoutMs",
    flag: { name: "connect-timeout", type: "string", value: "D", help: "How long a registry may take to answer" },
    env: "OCICACHE_CONNECT_TIMEOUT",
    parse: parsePositiveDuration,
    default: "30s",
    meaning: "how long a registry may take to answer (connection and response headers)",
  },
  idleTimeout: {
    field: "idleTimeoutMs",
    flag: { name: "idle-timeout", type: "string", value: "D", help: "How long a download may stall" },
    env: "OCICACHE_IDLE_TIMEOUT",
    parse: parsePositiveDuration,
    default: "30s",
    meaning:
      "any body from a registry (blob, manifest, token, error) that sends nothing for this long fails (exit 5); a " +
      "blob keeps its partial file. Small bodies (manifests, tokens, errors) must also be complete within 60 s",
  },
  lowSpeedLimit: {
    field: "lowSpeedLimitBytes",
    flag: {
      name: "low-speed-limit",
      type: "string",
      value: "SIZE",
      help: "A blob slower than SIZE per second over --low-speed-time fails (0: off)",
    },
    env: "OCICACHE_LOW_SPEED_LIMIT",
    parse: parseSize,
    default: "1KiB",
    meaning:
      "a blob download slower than this many bytes per second, on average over `lowSpeedTime`, fails (exit 5) and " +
      "keeps its partial file (curl's `--speed-limit`); `0` turns it off",
  },
  lowSpeedTime: {
    field: "lowSpeedTimeMs",
    flag: { name: "low-speed-time", type: "string", value: "D", help: "The time the low-speed limit is measured over" },
    env: "OCICACHE_LOW_SPEED_TIME",
    parse: parsePositiveDuration,
    default: "60s",
    meaning: "the time the low-speed limit is measured over (curl's `--speed-time`)",
  },
  lockTimeout: {
    field: "lockTimeoutMs",
    flag: undefined,
    env: "OCICACHE_LOCK_TIMEOUT",
    parse: parseDuration,
    default: "10m",
    meaning: "how long to wait for another process downloading the same blob before fetching it too",
  },
  listen: {
    field: "listen",
    flag: { name: "listen", type: "string", value: "HOST:PORT", help: "Where to listen" },
    env: "OCICACHE_LISTEN",
    parse: parseListen,
    default: "127.0.0.1:5050",
    meaning: "where `serve` listens (port `0`: any free port)",
  },
  upstream: {
    field: "upstream",
    flag: { name: "upstream", type: "string", value: "HOST", help: "The registry the /v2/ mirror pulls through" },
    env: "OCICACHE_UPSTREAM",
    parse: parseHost,
    default: undefined,
    meaning:
      "the registry the `serve` mirror pulls through (a bare name such as `myregistry` is a host, never a Docker " +
      "Hub namespace)",
  },
  allowedHosts: {
    field: "allowedHosts",
    flag: {
      name: "allowed-host",
      type: "string",
      multiple: true,
      value: "HOST",
      help: "Also answer requests for this Host name (repeatable)",
    },
    env: "OCICACHE_ALLOWED_HOSTS",
    parse: parseHosts,
    default: "",
    defaultDoc: "`[]`",
    meaning:
      "host names `serve` answers besides IP addresses, `localhost` and its listen host (see " +
      "[Security](../README.md#security))",
  },
  htpasswd: {
    field: "htpasswd",
    flag: {
      name: "htpasswd",
      type: "string",
      value: "FILE",
      help: "Every route but health needs Basic credentials from FILE (bcrypt)",
    },
    env: "OCICACHE_HTPASSWD",
    parse: (v: string) => v,
    default: undefined,
    meaning:
      "an htpasswd file of bcrypt entries (`htpasswd -B`): every route of `serve` but `/healthz` and `/readyz` then " +
      "needs Basic credentials from it (or the admin token)",
  },
  publicMirror: {
    field: "publicMirror",
    flag: {
      name: "public-mirror",
      type: "boolean",
      help: "Allow the mirror on a non-loopback address without --htpasswd",
    },
    env: "OCICACHE_PUBLIC_MIRROR",
    parse: parseBoolean,
    default: "false",
    meaning: "allow the mirror on a non-loopback address without `htpasswd`",
  },
  maxConcurrentDownloads: {
    field: "maxConcurrentDownloads",
    flag: { name: "max-downloads", type: "string", value: "N", help: "Upstream blob downloads at once" },
    env: "OCICACHE_MAX_DOWNLOADS",
    parse: parseCount,
    default: "8",
    meaning: "the mirror's upstream blob downloads at once; further misses queue",
  },
  maxConnections: {
    field: "maxConnections",
    flag: { name: "max-connections", type: "string", value: "N", help: "Blob responses at once; more get 429" },
    env: "OCICACHE_MAX_CONNECTIONS",
    parse: parseCount,
    default: "64",
    meaning: "the mirror's responses following a download at once; one more is a 429 with `Retry-After`",
  },
  clientBuffer: {
    field: "clientBufferBytes",
    flag: { name: "client-buffer", type: "string", value: "SIZE", help: "Bytes read at once for one client" },
    env: "OCICACHE_CLIENT_BUFFER",
    parse: parseBuffer,
    default: "256KiB",
    meaning: "bytes the mirror reads at once for one client (4KiB–64MiB)",
  },
  mirrors: {
    field: "mirrors",
    flag: {
      name: "mirror",
      type: "string",
      multiple: true,
      value: "HOST",
      help: "Try HOST first for every registry (repeatable)",
    },
    env: "OCICACHE_MIRRORS",
    parse: (input: string, what: string): MirrorSettings[] => parseHosts(input, what).map((host) => ({ host })),
    default: "",
    defaultDoc: "`[]`",
    meaning: "mirrors tried in order for every registry, after its own: each a host, or an object as in `registries`",
  },
  caFile: {
    field: "caFile",
    flag: { name: "ca-file", type: "string", value: "FILE", help: "Trust the CA in FILE (PEM) for TLS registries" },
    env: "OCICACHE_CA_FILE",
    parse: (v: string) => v,
    default: undefined,
    meaning: "a PEM CA certificate to trust for every TLS registry",
  },
  lockFile: {
    field: "lockFile",
    flag: {
      name: "lock-file",
      type: "string",
      value: "FILE",
      help: "Use the digests locked in FILE (lock: default ocicache.lock)",
    },
    env: "OCICACHE_LOCK_FILE",
    parse: (v: string) => v,
    default: undefined,
    defaultDoc: "none (`lock` writes `./ocicache.lock`)",
    meaning: "the lock file `pull`, `path` and `cat` take locked digests from (see [cli.md](cli.md#the-lock-file))",
  },
  policy: {
    field: "policyFile",
    flag: {
      name: "policy",
      type: "string",
      value: "FILE",
      help: "Hand out only images the signature policy in FILE accepts (containers-policy.json)",
    },
    env: "OCICACHE_POLICY",
    parse: (v: string) => v,
    default: undefined,
    defaultDoc: "none (no signature is checked)",
    meaning:
      "a signature policy (containers-policy.json) `pull`, `path` and `cat` check before handing out a file, " +
      "and `serve`'s mirror before serving a manifest; `doctor` checks it (see [signatures.md](signatures.md))",
  },
} as const satisfies Record<string, Setting>;

/** A setting's key. */
export type SettingKey = keyof typeof KEYS;

type Entry<K extends SettingKey> = (typeof KEYS)[K];

/** Every setting's value, by its field of `Config`: what its parser gives, or `undefined` where it has no default. */
export type SettingValues = {
  -readonly [K in SettingKey as Entry<K>["field"]]: Entry<K>["default"] extends string
    ? ReturnType<Entry<K>["parse"]>
    : ReturnType<Entry<K>["parse"]> | undefined;
};

/**
 * The defaults, each its setting's default through its parser (the same value a flag of that text would give).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { settingDefaults } from "./settings.ts";
 * assert.equal(settingDefaults().maxAgeMs, 30 * 86_400_000);
 * ```
 */
export function settingDefaults(): SettingValues {
  const defaults: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(KEYS) as Array<[string, Setting]>)
    defaults[setting.field] = setting.default === undefined ? undefined : setting.parse(setting.default, `"${key}"`);
  return defaults as SettingValues;
}

type FlagOf<S> = S extends { flag: { name: infer N extends string } } ? N : never;

/** The CLI options of the settings that have a flag, by flag name: what `options.ts` puts in its table. */
export type SettingOptions = {
  -readonly [K in SettingKey as FlagOf<Entry<K>>]: Omit<NonNullable<Entry<K>["flag"]>, "name">;
};

/**
 * The settings' flags as CLI options, each help line ending with its default.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { settingOptions } from "./settings.ts";
 * assert.equal(settingOptions()["max-age"].help, "Remove what was unused this long (default 30d)");
 * ```
 */
export function settingOptions(): SettingOptions {
  const options: Record<string, unknown> = {};
  for (const setting of Object.values(KEYS) as Setting[]) {
    if (setting.flag === undefined) continue;
    const { name, help, ...spec } = setting.flag;
    const shown = setting.default === undefined || setting.default === "" ? "" : ` (default ${setting.default})`;
    options[name] = { ...spec, help: `${help}${shown}` };
  }
  return options as SettingOptions;
}

/** The per-registry settings of the config file (no flag, no variable). */
export const REGISTRIES_MEANING =
  "per registry host: `mirrors` (each a host, or `{host, capabilities?, path?, insecure?, ca?, username?, " +
  "password?}`), `insecure`, `ca`, `username`, `password` (see [fleet.md](fleet.md))";

/**
 * The table of `docs/configuration.md`: one row per setting, and `registries`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { settingsTable } from "./settings.ts";
 * assert.match(settingsTable(), /^\| `maxAge` \| `--max-age` \| `OCICACHE_MAX_AGE` \| `30d` \|/m);
 * ```
 */
export function settingsTable(): string {
  const rows = Object.entries(KEYS).map(([key, setting]: [string, Setting]) => {
    const list = setting.flag?.multiple === true;
    const boolean = setting.parse === parseBoolean;
    const flag = setting.flag === undefined ? "" : `\`--${setting.flag.name}\`${list ? " (repeatable)" : ""}`;
    const env = `\`${setting.env}\`${list ? " (comma-separated)" : boolean ? " (`true`/`false`)" : ""}`;
    const shown = setting.defaultDoc ?? (setting.default === undefined ? "none" : `\`${setting.default}\``);
    return `| \`${key}\` | ${flag} | ${env} | ${shown} | ${setting.meaning} |`;
  });
  return [
    "| key | flag | environment | default | meaning |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
    `| \`registries\` | | | \`{}\` | ${REGISTRIES_MEANING} |`,
  ].join("\n");
}

/**
 * `text` (`docs/configuration.md`) with the part between its two markers replaced by `settingsTable()`.
 *
 * @throws {Error} when the markers are missing.
 */
export function withSettingsTable(text: string): string {
  const start = "<!-- settings table: from lib/config/settings.ts, written by bun scripts/gen-config.ts -->";
  const end = "<!-- end of the settings table -->";
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to === -1) throw new Error(`docs/configuration.md has no "${start}" … "${end}"`);
  return `${text.slice(0, from + start.length)}\n${settingsTable()}\n${text.slice(to)}`;
}

function parsePositiveDuration(input: string, what: string): number {
  const ms = parseDuration(input, what);
  if (ms <= 0) throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected a duration longer than 0`);
  return ms;
}

/** `host:port`, `[v6]:port`; port 0 picks a free one. */
function parseListen(input: string, what: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(input.trim());
  if (match === null || Number(match[2]) > 65535)
    throw new UsageError(`Cannot parse ${what} "${input.slice(0, 60)}": expected host:port, e.g. 127.0.0.1:5050`);
  return input.trim();
}

/** A comma-separated list of registry hosts. */
function parseHosts(input: string, what: string): string[] {
  return parseList(input).map((host) => parseHost(host, what));
}

/** A registry host with an optional port, as in a reference. */
function parseHost(input: string, what: string): string {
  if (!HOST_RE.test(input.trim())) {
    throw new UsageError(
      `Cannot parse ${what} "${input.slice(0, 60)}": expected a registry host such as 127.0.0.1:5000`,
    );
  }
  return input.trim();
}

function parseBoolean(input: string, what: string): boolean {
  const lower = input.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(lower)) return true;
  if (["0", "false", "no", "off"].includes(lower)) return false;
  throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected true or false`);
}

function parseList(input: string): string[] {
  return input
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function parseConcurrency(input: string, what: string): number {
  const n = Number(input);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected a whole number from 1 to 64`);
  return n;
}

function parseCount(input: string, what: string): number {
  const n = Number(input);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) {
    throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected a whole number from 1 to 100000`);
  }
  return n;
}

function parseBuffer(input: string, what: string): number {
  const bytes = parseSize(input, what);
  if (bytes < 4096 || bytes > 64 * 1024 * 1024) {
    throw new UsageError(`Cannot parse ${what} "${input.slice(0, 40)}": expected a size from 4KiB to 64MiB`);
  }
  return bytes;
}
