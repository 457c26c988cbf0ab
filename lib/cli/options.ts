/**
 * The CLI's options and commands: each option with its help line, each
 * command with the options it takes, its usage line and an example. The
 * parser, the check that a command gets only its own options, and every help
 * text come from these two tables.
 *
 * @module
 */

import { settingOptions } from "../config/settings.ts";
import type { OptionSpec, ParsedValues } from "./args.ts";

/** One option: how it parses, and its help line. */
interface OptionDoc extends OptionSpec {
  /** The placeholder for its value, for a string option. */
  value?: string;
  help: string;
}

/** Every option: the settings' flags come from the table of settings, with their help and default. */
export const OPTIONS = {
  ...settingOptions(),
  output: { type: "string", short: "o", value: "DIR", help: "Write kernel, initrd, rom* into DIR" },
  link: { type: "boolean", help: "Hardlink the read-only cache files into DIR instead of copying" },
  "debug-kernel": { type: "boolean", help: "Also write kernel.dbg" },
  "all-platforms": { type: "boolean", help: "Every platform of an index (with -o DIR: DIR/linux-amd64-qemu/…)" },
  role: {
    type: "string",
    value: "ROLE",
    choices: ["kernel", "initrd", "kernel.dbg", "rom"],
    help: "The file: kernel, initrd, kernel.dbg or rom",
  },
  platform: {
    type: "string",
    value: "OS/ARCH",
    help: "Choose from an index (default: this machine's architecture)",
  },
  plat: { type: "string", value: "PLAT", help: "Choose by unikraft platform (qemu, fc, xen, …)" },
  locked: {
    type: "boolean",
    help: "A reference not in the lock file (default ./ocicache.lock) is not found (exit 3)",
  },
  check: { type: "boolean", help: "Exit 1 when a locked tag points elsewhere now (7 when --policy refuses a digest)" },
  update: { type: "boolean", help: "Resolve the locked references again (or the ones named)" },
  config: {
    type: "string",
    value: "FILE",
    help: "The config file (default: $XDG_CONFIG_HOME/ocicache/config.json)",
  },
  refresh: { type: "boolean", help: "Ask the registry even when the tag is known" },
  verify: { type: "boolean", help: "Re-hash cached blobs before using them" },
  "dry-run": { type: "boolean", help: "Report what would be removed; remove nothing" },
  blobs: { type: "boolean", help: "Every blob instead of every reference" },
  repair: { type: "boolean", help: "Remove corrupt blobs and drop wrong records" },
  all: { type: "boolean", help: "Everything" },
  json: { type: "boolean", help: "Print the result as JSON" },
  quiet: { type: "boolean", short: "q", help: "No progress and no warnings" },
  progress: {
    type: "string",
    value: "MODE",
    choices: ["auto", "plain", "json"],
    help: "auto (a line on a terminal, a log elsewhere), plain (a log) or json (a JSON line per event)",
  },
  debug: { type: "boolean", help: "Show stack traces" },
  help: { type: "boolean", short: "h", help: "Show this help" },
  version: { type: "boolean", short: "V", help: "Show the version" },
} satisfies Record<string, OptionDoc>;

/** The parsed flags. */
export type Flags = ParsedValues<typeof OPTIONS>;

type OptionName = keyof typeof OPTIONS;

/** One command: its usage line, what it does, the options it takes beyond the common ones, an example. */
interface CommandDoc {
  usage: string;
  summary: string;
  options: readonly OptionName[];
  example: string;
  /** What an option means for this command, where its own help line would mislead (stats reports, removes nothing). */
  help?: Partial<Record<OptionName, string>>;
}

/** The options every command takes. */
export const COMMON: readonly OptionName[] = ["cache-dir", "config", "quiet", "debug", "help", "version"];
/** How a command that contacts a registry reaches it. */
const REGISTRY: readonly OptionName[] = [
  "offline",
  "insecure-registry",
  "mirror",
  "ca-file",
  "connect-timeout",
  "idle-timeout",
  "low-speed-limit",
  "low-speed-time",
];
/** How a pull chooses and trusts what it uses. */
const CHOICE: readonly OptionName[] = ["platform", "plat", "fresh-for", "refresh", "verify"];
/** A lock file's digests in place of tags. */
const LOCK: readonly OptionName[] = ["lock-file", "locked"];
/** The cleanup limits (a pull that fetched something cleans up with them). */
const LIMITS: readonly OptionName[] = ["max-age", "max-size", "grace"];

/** Every command, by name. */
export const COMMANDS = {
  pull: {
    usage: "pull REF… [-o DIR]",
    summary: "Pull images through the cache (several at once); print their files",
    options: [
      "output",
      "link",
      "debug-kernel",
      "all-platforms",
      "concurrency",
      "json",
      "progress",
      "policy",
      ...LOCK,
      ...CHOICE,
      ...REGISTRY,
      ...LIMITS,
    ],
    example: "ocicache pull unikraft.org/nginx:1.25 -o build",
  },
  path: {
    usage: "path REF --role ROLE | REF@sha256:…",
    summary: "Print the cached file of ROLE (or of a blob digest)",
    options: ["role", "progress", "policy", ...LOCK, ...CHOICE, ...REGISTRY, ...LIMITS],
    example: "ocicache path unikraft.org/nginx:1.25 --role kernel",
  },
  cat: {
    usage: "cat REF --role ROLE | REF@sha256:…",
    summary: "Write ROLE's file (or one blob) to stdout",
    options: ["role", "progress", "policy", ...LOCK, ...CHOICE, ...REGISTRY, ...LIMITS],
    example: "ocicache cat unikraft.org/nginx:1.25 --role initrd > initrd.cpio",
  },
  lock: {
    usage: "lock REF… | --update [REF…] | --check",
    summary: "Resolve references once and record their digests in a lock file (default ./ocicache.lock)",
    options: [
      "lock-file",
      "update",
      "check",
      "json",
      "progress",
      "policy",
      "concurrency",
      "platform",
      "plat",
      ...REGISTRY,
      ...LIMITS,
    ],
    example: "ocicache lock unikraft.org/nginx:1.25 && ocicache pull unikraft.org/nginx:1.25 --lock-file ocicache.lock",
  },
  inspect: {
    usage: "inspect REF",
    summary: "Show what REF offers: its platforms, each one's files, sizes and whether cached, and its signatures",
    options: ["json", "policy", "fresh-for", "refresh", ...REGISTRY],
    example: "ocicache inspect unikraft.org/nginx:1.25",
  },
  tags: {
    usage: "tags REPO",
    summary: "List the tags of a repository (offline: the tags the cache knows)",
    options: ["json", ...REGISTRY],
    example: "ocicache tags unikraft.org/nginx",
  },
  ls: {
    usage: "ls [--blobs]",
    summary: "List cached references (or every blob)",
    options: ["blobs", "json"],
    example: "ocicache ls",
  },
  stats: {
    usage: "stats | du",
    summary: "Totals: references, blobs, bytes, oldest and newest use",
    options: ["json", ...LIMITS],
    help: {
      "max-age": "Count the bytes unused this long",
      "max-size": "Count the bytes over SIZE",
      grace: "Not used by stats, which removes nothing",
    },
    example: "ocicache stats --json",
  },
  gc: {
    usage: "gc [--max-age D] [--max-size SIZE] [--dry-run]",
    summary: "Remove what was not used for long, then the least recently used",
    options: ["dry-run", "json", ...LIMITS],
    example: "ocicache gc --max-size 5GiB --dry-run",
  },
  verify: {
    usage: "verify [--repair]",
    summary: "Re-hash every blob; --repair removes corrupt ones",
    options: ["repair", "json"],
    example: "ocicache verify --repair",
  },
  rm: {
    usage: "rm REF|DIGEST…",
    summary: "Remove references (with their unshared blobs) or blobs",
    options: ["json"],
    example: "ocicache rm unikraft.org/nginx:1.25",
  },
  prune: {
    usage: "prune --all",
    summary: "Empty the cache",
    options: ["all", "json"],
    example: "ocicache prune --all",
  },
  doctor: {
    usage: "doctor [REF|HOST…]",
    summary: "Check the cache, the config, the policy and each configured registry (or the ones named, and each REF)",
    options: ["json", "policy", ...REGISTRY],
    example: "ocicache doctor 127.0.0.1:5000/unikraft/nginx:1.25",
  },
  serve: {
    usage: "serve [--listen HOST:PORT] [--upstream HOST]",
    summary: "The admin API, and with --upstream a registry mirror",
    options: [
      "listen",
      "upstream",
      "allowed-host",
      "htpasswd",
      "public-mirror",
      "policy",
      "max-downloads",
      "max-connections",
      "client-buffer",
      "concurrency",
      "fresh-for",
      ...REGISTRY,
      ...LIMITS,
    ],
    example: "ocicache serve --upstream ghcr.io",
  },
  completion: {
    usage: "completion bash|zsh|fish",
    summary: "Print the shell's completion script (commands, options, roles, platforms, cached references)",
    options: [],
    example: "source <(ocicache completion bash)",
  },
} satisfies Record<string, CommandDoc>;

/** A command's name. */
export type CommandName = keyof typeof COMMANDS;

/** Other names of commands. */
const ALIASES: Record<string, CommandName> = { du: "stats" };

/** The command `name` stands for, if any. */
export function commandNamed(name: string): CommandName | undefined {
  return Object.hasOwn(COMMANDS, name) ? (name as CommandName) : ALIASES[name];
}

/** The option of `flags` that `command` does not take, if any. */
export function foreignOption(command: CommandName, flags: Flags): string | undefined {
  const allowed: readonly string[] = [...COMMON, ...COMMANDS[command].options];
  return Object.keys(flags).find((name) => !allowed.includes(name));
}

const EXIT_LINE =
  "Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 integrity, 5 registry unreachable, 6 authentication refused, " +
  "7 refused by the signature policy.";

/** The usage text of `ocicache --help`. */
export function usage(): string {
  const commands = Object.values(COMMANDS).map((c: CommandDoc) => row(c.usage, c.summary));
  return [
    "Usage: ocicache <command> [options]",
    "",
    "Commands:",
    ...commands,
    "",
    "REF is [host[:port]/]repo[:tag][@sha256:<hex>], or oci:DIR[:tag] for a local OCI layout.",
    "ROLE is kernel, initrd, kernel.dbg or rom.",
    "",
    "Options of every command:",
    ...COMMON.map((name) => optionRow(name)),
    "",
    "Run `ocicache <command> --help` for the options of a command.",
    EXIT_LINE,
  ].join("\n");
}

/** The usage text of `ocicache COMMAND --help`. */
export function commandUsage(command: CommandName): string {
  const doc: CommandDoc = COMMANDS[command];
  return [
    `Usage: ocicache ${doc.usage} [options]`,
    "",
    `${doc.summary}.`,
    "",
    "Options:",
    ...doc.options.map((name) => optionRow(name, doc.help?.[name])),
    "",
    "Options of every command:",
    ...COMMON.map((name) => optionRow(name)),
    "",
    "Example:",
    `  ${doc.example}`,
    "",
    EXIT_LINE,
  ].join("\n");
}

function optionRow(name: OptionName, help?: string): string {
  const option: OptionDoc = OPTIONS[name];
  const short = option.short === undefined ? "    " : `-${option.short}, `;
  // A command's own wording keeps the option's default, declared once in the settings table.
  const own = help === undefined ? option.help : `${help}${/ \(default [^)]*\)$/.exec(option.help)?.[0] ?? ""}`;
  return row(`${short}--${name}${option.value === undefined ? "" : ` ${option.value}`}`, own);
}

function row(left: string, right: string): string {
  return left.length < 27 ? `  ${left.padEnd(27)}${right}` : `  ${left}\n  ${" ".repeat(27)}${right}`;
}
