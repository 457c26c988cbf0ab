/**
 * The command line: argument parsing, configuration, dispatch, exit codes.
 * With `cli-pull.ts` and `cli-manage.ts`, the only modules that print; the
 * management commands are loaded only when asked for.
 *
 * @module
 */

import pkg from "../package.json" with { type: "json" };
import { parseArguments, type OptionSpec, type ParsedValues } from "./args.ts";
import { loadConfig, type Config, type RawConfig } from "./config.ts";
import { EXIT_CODES, OcicacheError, UsageError } from "./errors.ts";
import { releaseAllLocks } from "./lock.ts";
import type { CacheOptions } from "./cache.ts";
import type { RegistryClientOptions } from "./registry.ts";
import { escapeControl } from "./text.ts";
import { removeUnfinished } from "./writer.ts";

const USAGE = `Usage: ocicache <command> [options]

Commands:
  pull REF [-o DIR]          Pull an image through the cache; print its files
  path REF --role ROLE       Print the cached file of ROLE (or of REF's blob digest)
  cat REF [--role ROLE]      Write one blob (REF@sha256:…) or ROLE's file to stdout
  ls [--blobs]               List cached references (or every blob)
  du | stats                 Totals: references, blobs, bytes, oldest and newest use
  gc [--max-age D] [--max-size S] [--dry-run]
                             Remove what was not used for long, then the least recently used
  verify [--repair]          Re-hash every blob; --repair removes corrupt ones
  rm REF|DIGEST…             Remove references (with their unshared blobs) or blobs
  prune --all                Empty the cache
  doctor                     Check the cache, the config and each configured registry
  serve [--listen H:P] [--upstream HOST]
                             The admin API, and with --upstream a registry mirror

REF is [host[:port]/]repo[:tag][@sha256:<hex>], or oci:DIR[:tag] for a local OCI layout.
ROLE is kernel, initrd, kernel.dbg or rom.

Options:
  -o, --output DIR           Write kernel, initrd, rom* into DIR (pull)
      --link                 Hardlink the read-only cache files into DIR
      --debug-kernel         Also write kernel.dbg
      --role ROLE            The file to print or write (path, cat)
      --platform OS/ARCH     Choose from an index (default: this machine's architecture)
      --plat PLAT            Choose by unikraft platform (qemu, fc, xen, …)
      --cache-dir DIR        The cache (default: $OCICACHE_DIR, else $XDG_CACHE_HOME/ocicache)
      --config FILE          The config file (default: $XDG_CONFIG_HOME/ocicache/config.json)
      --offline              Never contact a registry
      --fresh-for DURATION   Trust a tag checked within DURATION (e.g. 10m; default 0)
      --refresh              Ask the registry even when the tag is known
      --verify               Re-hash cached blobs before using them
      --insecure-registry HOST  Use plain HTTP for HOST (repeatable)
      --mirror HOST          Try HOST first for every registry (repeatable, in order)
      --ca-file FILE         Trust the CA in FILE (PEM) for TLS registries
      --concurrency N        Layers downloaded at once (default 4)
      --connect-timeout D    How long a registry may take to answer (default 30s)
      --idle-timeout D       How long a download may stall (default 30s)
      --low-speed-limit SIZE A blob slower than SIZE per second over --low-speed-time fails (default 1KiB; 0 off)
      --low-speed-time D     The time the low-speed limit is measured over (default 60s)
      --max-age DURATION     gc: remove what was unused this long (default 30d)
      --max-size SIZE        gc: evict down to SIZE (default 10GiB)
      --grace DURATION       gc: never remove what was used this recently (default 10m)
      --dry-run              gc: report, remove nothing
      --blobs                ls: every blob
      --repair               verify: remove corrupt blobs
      --all                  prune: everything
      --listen HOST:PORT     serve: where to listen (default 127.0.0.1:5050)
      --upstream HOST        serve: the registry the /v2/ mirror pulls through
      --allowed-host HOST    serve: also answer requests for this Host name (repeatable)
      --htpasswd FILE        serve: mirror clients need Basic credentials from FILE (bcrypt entries)
      --public-mirror        serve: allow the mirror on a non-loopback address without --htpasswd
      --json                 Print the result as JSON
  -q, --quiet                No progress and no warnings
      --debug                Show stack traces
  -h, --help                 Show this help
  -V, --version              Show the version

Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 integrity, 5 registry unreachable, 6 authentication refused.`;

const OPTIONS = {
  output: { type: "string", short: "o" },
  link: { type: "boolean" },
  "debug-kernel": { type: "boolean" },
  role: { type: "string" },
  platform: { type: "string" },
  plat: { type: "string" },
  "cache-dir": { type: "string" },
  config: { type: "string" },
  offline: { type: "boolean" },
  "fresh-for": { type: "string" },
  refresh: { type: "boolean" },
  verify: { type: "boolean" },
  "insecure-registry": { type: "string", multiple: true },
  concurrency: { type: "string" },
  "connect-timeout": { type: "string" },
  "idle-timeout": { type: "string" },
  "low-speed-limit": { type: "string" },
  "low-speed-time": { type: "string" },
  listen: { type: "string" },
  "allowed-host": { type: "string", multiple: true },
  htpasswd: { type: "string" },
  "public-mirror": { type: "boolean" },
  upstream: { type: "string" },
  mirror: { type: "string", multiple: true },
  "ca-file": { type: "string" },
  "max-age": { type: "string" },
  "max-size": { type: "string" },
  grace: { type: "string" },
  "dry-run": { type: "boolean" },
  blobs: { type: "boolean" },
  repair: { type: "boolean" },
  all: { type: "boolean" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} satisfies Record<string, OptionSpec>;

/** The parsed flags. */
export type Flags = ParsedValues<typeof OPTIONS>;

/** What every command gets. */
export interface Context {
  flags: Flags;
  config: Config;
  args: string[];
  /** One line (or more) to stdout. */
  print(text: string): void;
  /** One warning line to stderr, unless `--quiet`. */
  warn(message: string): void;
}

/**
 * Run the CLI with `argv` (without the program name) and return the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * process.exitCode = await main(["--version"]);
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  let debug = argv.includes("--debug");
  try {
    const { values: flags, positionals } = parseArguments(argv, OPTIONS);
    debug = flags.debug === true;
    if (flags.version) return printLine(pkg.version);
    const [command, ...args] = positionals;
    if (flags.help || command === undefined || command === "help") return printLine(USAGE);
    const run = await findCommand(command);
    const config = await loadConfig({ flags: rawFlags(flags), ...(flags.config !== undefined && { configPath: flags.config }) });
    const context: Context = {
      flags,
      config,
      args,
      print: (text) => printLine(text),
      warn: (message) => {
        if (!flags.quiet) console.error(`ocicache: warning: ${escapeControl(message)}`);
      },
    };
    return await run(context);
  } catch (error) {
    return report(error, debug);
  }
}

async function findCommand(command: string): Promise<(context: Context) => Promise<number>> {
  switch (command) {
    case "pull":
    case "path":
    case "cat":
      exitOnSignals();
      return (await import("./cli-pull.ts")).PULL_COMMANDS[command];
    case "ls":
    case "du":
    case "stats":
    case "gc":
    case "verify":
    case "rm":
    case "prune":
    case "doctor":
      return (await import("./cli-manage.ts")).MANAGE_COMMANDS[command];
    case "serve":
      return (await import("./cli-serve.ts")).runServe;
    default:
      throw new UsageError(`Unknown command "${command}" (see ocicache --help)`);
  }
}

/**
 * SIGINT and SIGTERM end a pull with 130 and 143: nothing is removed from
 * `blobs/`, partial downloads stay in `tmp/` for the next pull to resume, and
 * this process's locks and unfinished temp files go.
 */
function exitOnSignals(): void {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(signal, () => {
      releaseAllLocks();
      removeUnfinished();
      console.error(`ocicache: error: Interrupted by ${signal}; partial downloads are kept to resume`);
      process.exit(code);
    });
  }
}

/** The cache's settings from the configuration. */
export function cacheOptions(config: Config): CacheOptions {
  return {
    dir: config.cacheDir,
    offline: config.offline,
    freshForMs: config.freshForMs,
    registry: registryOptions(config),
    idleTimeoutMs: config.idleTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
    ...(config.lowSpeedLimitBytes > 0 && { lowSpeed: { bytesPerSecond: config.lowSpeedLimitBytes, windowMs: config.lowSpeedTimeMs } }),
  };
}

/** The registry client's settings from the configuration. */
export function registryOptions(config: Config): RegistryClientOptions {
  return {
    insecureRegistries: config.insecureRegistries,
    connectTimeoutMs: config.connectTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    mirrors: config.mirrors,
    registries: config.registries,
    ...(config.caFile !== undefined && { caFile: config.caFile }),
  };
}

/** Exactly one positional argument. */
export function one(context: Context, what = "reference"): string {
  if (context.args.length !== 1) throw new UsageError(`Cannot run this command: expected one ${what}, got ${context.args.length}`);
  return context.args[0]!;
}

function rawFlags(flags: Flags): RawConfig {
  const raw: RawConfig = {};
  if (flags["cache-dir"] !== undefined) raw.cacheDir = flags["cache-dir"];
  if (flags["max-age"] !== undefined) raw.maxAge = flags["max-age"];
  if (flags["max-size"] !== undefined) raw.maxSize = flags["max-size"];
  if (flags.grace !== undefined) raw.grace = flags.grace;
  if (flags["fresh-for"] !== undefined) raw.freshFor = flags["fresh-for"];
  if (flags.offline) raw.offline = "true";
  if (flags["insecure-registry"] !== undefined) raw.insecureRegistries = flags["insecure-registry"].join(",");
  if (flags.concurrency !== undefined) raw.concurrency = flags.concurrency;
  if (flags["connect-timeout"] !== undefined) raw.connectTimeout = flags["connect-timeout"];
  if (flags["idle-timeout"] !== undefined) raw.idleTimeout = flags["idle-timeout"];
  if (flags["low-speed-limit"] !== undefined) raw.lowSpeedLimit = flags["low-speed-limit"];
  if (flags["low-speed-time"] !== undefined) raw.lowSpeedTime = flags["low-speed-time"];
  if (flags.listen !== undefined) raw.listen = flags.listen;
  if (flags["allowed-host"] !== undefined) raw.allowedHosts = flags["allowed-host"].join(",");
  if (flags.htpasswd !== undefined) raw.htpasswd = flags.htpasswd;
  if (flags["public-mirror"]) raw.publicMirror = "true";
  if (flags.upstream !== undefined) raw.upstream = flags.upstream;
  if (flags.mirror !== undefined) raw.mirrors = flags.mirror.join(",");
  if (flags["ca-file"] !== undefined) raw.caFile = flags["ca-file"];
  return raw;
}

/** One or more lines to stdout. `console.log`: `process.stdout` costs a start about 25 ms in Bun. */
function printLine(text: string): number {
  if (text !== "") console.log(text);
  return EXIT_CODES.ok;
}

function report(error: unknown, debug: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`ocicache: error: ${escapeControl(message.split("\n")[0]!)}`);
  if (debug && error instanceof Error && error.stack !== undefined) console.error(error.stack);
  return error instanceof OcicacheError ? error.exitCode : EXIT_CODES.other;
}
