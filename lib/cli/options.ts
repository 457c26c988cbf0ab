/**
 * The CLI's options and its usage text: the one list of flags every command
 * is parsed against.
 *
 * @module
 */

import type { OptionSpec, ParsedValues } from "./args.ts";

/** The usage text of `ocicache --help`. */
export const USAGE = `Usage: ocicache <command> [options]

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
      --max-downloads N      serve: upstream blob downloads at once; more wait their turn (default 8)
      --max-connections N    serve: blob responses at once; more are told to retry, 429 (default 64)
      --client-buffer SIZE   serve: bytes read at once for one client (default 256KiB)
      --json                 Print the result as JSON
  -q, --quiet                No progress and no warnings
      --debug                Show stack traces
  -h, --help                 Show this help
  -V, --version              Show the version

Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 integrity, 5 registry unreachable, 6 authentication refused.`;

/** Every flag, for `parseArguments`. */
export const OPTIONS = {
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
  "max-downloads": { type: "string" },
  "max-connections": { type: "string" },
  "client-buffer": { type: "string" },
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
