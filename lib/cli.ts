/**
 * The command line: argument parsing, commands, exit codes and progress on a
 * TTY. The only module that prints.
 *
 * @module
 */

import { writeSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import pkg from "../package.json" with { type: "json" };
import { Cache } from "./cache.ts";
import { EXIT_CODES, OcicacheError, UsageError } from "./errors.ts";
import type { Role } from "./image.ts";
import { pullLayout } from "./local.ts";
import { parsePlatform } from "./platform.ts";
import { ProgressBar } from "./progress.ts";
import { pullBlob, pullImage, type PullResult } from "./pull.ts";
import { parseLayoutSource, parseReference, type Reference } from "./reference.ts";
import { parseDuration } from "./units.ts";

const USAGE = `Usage: ocicache <command> [options]

Commands:
  pull REF [-o DIR]        Pull an image through the cache; print its files
  path REF --role ROLE     Print the cached file of ROLE (or of REF's blob digest)
  cat REF [--role ROLE]    Write one blob (REF@sha256:…) or ROLE's file to stdout

REF is [host[:port]/]repo[:tag][@sha256:<hex>], or oci:DIR[:tag] for a local OCI layout.
ROLE is kernel, initrd, kernel.dbg or rom.

Options:
  -o, --output DIR         Write kernel, initrd, rom* into DIR (pull)
      --link               Hardlink the read-only cache files into DIR
      --debug-kernel       Also write kernel.dbg
      --role ROLE          The file to print or write (path, cat)
      --platform OS/ARCH   Choose from an index (default: this machine's architecture)
      --plat PLAT          Choose by unikraft platform (qemu, fc, xen, …)
      --cache-dir DIR      The cache (default: $OCICACHE_DIR, else $XDG_CACHE_HOME/ocicache)
      --offline            Never contact a registry
      --fresh-for DURATION Trust a tag checked within DURATION (e.g. 10m; default 0)
      --refresh            Ask the registry even when the tag is known
      --verify             Re-hash cached blobs before using them
      --insecure-registry HOST  Use plain HTTP for HOST (repeatable)
      --json               Print the result as JSON
  -q, --quiet              No progress and no warnings
      --debug              Show stack traces
  -h, --help               Show this help
  -V, --version            Show the version

Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 integrity, 5 registry unreachable, 6 authentication refused.`;

const OPTIONS = {
  output: { type: "string", short: "o" },
  link: { type: "boolean" },
  "debug-kernel": { type: "boolean" },
  role: { type: "string" },
  platform: { type: "string" },
  plat: { type: "string" },
  "cache-dir": { type: "string" },
  offline: { type: "boolean" },
  "fresh-for": { type: "string" },
  refresh: { type: "boolean" },
  verify: { type: "boolean" },
  "insecure-registry": { type: "string", multiple: true },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} satisfies ParseArgsConfig["options"];

type Flags = ReturnType<typeof parse>["values"];

const ROLES: Role[] = ["kernel", "initrd", "kernel.dbg", "rom"];

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
    const { values: flags, positionals } = parse(argv);
    debug = flags.debug === true;
    if (flags.version) return print(pkg.version);
    const [command, ...args] = positionals;
    if (flags.help || command === undefined || command === "help") return print(USAGE);
    switch (command) {
      case "pull":
        return await runPull(one(args, "pull"), flags);
      case "path":
        return await runPath(one(args, "path"), flags);
      case "cat":
        return await runCat(one(args, "cat"), flags);
      default:
        throw new UsageError(`Unknown command "${command}" (see ocicache --help)`);
    }
  } catch (error) {
    return report(error, debug);
  }
}

async function runPull(input: string, flags: Flags): Promise<number> {
  const platform = parsePlatform(flags.platform, flags.plat);
  const layout = parseLayoutSource(input);
  const options = {
    platform,
    ...(flags.output !== undefined && { outDir: flags.output }),
    link: flags.link === true,
    debugKernel: flags["debug-kernel"] === true,
  };
  if (layout !== undefined) return printResult(pullLayout(layout, { ...options, verify: flags.verify === true }), flags);
  const ref = parseReference(input);
  return printResult(await withProgress(flags, input, (cache) => pullImage(cache, ref, options)), flags);
}

async function runPath(input: string, flags: Flags): Promise<number> {
  const role = parseRole(flags.role);
  const layout = parseLayoutSource(input);
  if (layout !== undefined) {
    const result = pullLayout(layout, { platform: parsePlatform(flags.platform, flags.plat), roles: [role ?? "kernel"] });
    return print(result.files[0]!.path);
  }
  const ref = parseReference(input);
  if (role === undefined) {
    const blob = await withProgress(flags, input, (cache) => pullBlob(cache, requireDigest(ref, "path")));
    if (blob.path === undefined || !blob.cached) throw new UsageError(`Cannot give a path for "${input}": the cache cannot be written`);
    return print(blob.path);
  }
  const platform = parsePlatform(flags.platform, flags.plat);
  const result = await withProgress(flags, input, (cache) => pullImage(cache, ref, { platform, roles: [role] }));
  return print(result.files[0]!.path);
}

async function runCat(input: string, flags: Flags): Promise<number> {
  const role = parseRole(flags.role);
  let path: string | undefined;
  if (role !== undefined) {
    const ref = parseReference(input);
    const platform = parsePlatform(flags.platform, flags.plat);
    const result = await withProgress(flags, input, (cache) => pullImage(cache, ref, { platform, roles: [role] }));
    path = result.files[0]!.path;
  } else {
    const ref = requireDigest(parseReference(input), "cat");
    const blob = await withCache(flags, async (cache) => {
      if (cache.store.stat(ref.digest) !== undefined) return pullBlob(cache, ref);
      return pullBlob(cache, ref, { onChunk: (chunk) => writeStdout(chunk) });
    });
    if (!blob.hit) return EXIT_CODES.ok;
    path = blob.path;
  }
  await Bun.write(Bun.stdout, Bun.file(path!));
  return EXIT_CODES.ok;
}

function printResult(result: PullResult, flags: Flags): number {
  if (flags.json) return print(JSON.stringify(result, null, 2));
  return print(result.files.map((f) => f.path).join("\n"));
}

async function withProgress<T>(flags: Flags, label: string, run: (cache: Cache) => Promise<T>): Promise<T> {
  const bar = process.stderr.isTTY && !flags.quiet && !flags.json
    ? new ProgressBar(label, (text) => process.stderr.write(text))
    : undefined;
  try {
    return await withCache(flags, run, bar);
  } finally {
    bar?.done();
  }
}

async function withCache<T>(flags: Flags, run: (cache: Cache) => Promise<T>, bar?: ProgressBar): Promise<T> {
  const cache = new Cache({
    dir: cacheDir(flags),
    offline: flags.offline === true,
    freshForMs: flags["fresh-for"] === undefined ? 0 : parseDuration(flags["fresh-for"], "--fresh-for"),
    refresh: flags.refresh === true,
    verify: flags.verify === true,
    registry: { insecureRegistries: flags["insecure-registry"] ?? [] },
    onWarning: (message) => {
      if (!flags.quiet) process.stderr.write(`${bar === undefined ? "" : "\r\x1b[2K"}ocicache: warning: ${message}\n`);
    },
    ...(bar !== undefined && { onProgress: (progress) => bar.update(progress) }),
  });
  return await run(cache);
}

/** `--cache-dir`, else `$OCICACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/ocicache`. */
function cacheDir(flags: Flags): string {
  const env = process.env;
  return flags["cache-dir"] ?? (env.OCICACHE_DIR || join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), ".cache"), "ocicache"));
}

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`Cannot parse arguments: ${(error as Error).message.split("\n")[0]!.replace(/\.$/, "")}`);
  }
}

function one(args: string[], command: string): string {
  if (args.length !== 1) throw new UsageError(`Cannot run "${command}": expected one reference, got ${args.length}`);
  return args[0]!;
}

function parseRole(role: string | undefined): Role | undefined {
  if (role === undefined) return undefined;
  if (!ROLES.includes(role as Role)) throw new UsageError(`Unknown role "${role}" (expected ${ROLES.join(", ")})`);
  return role as Role;
}

function requireDigest(ref: Reference, command: string): Reference & { digest: NonNullable<Reference["digest"]> } {
  if (ref.digest === undefined) {
    throw new UsageError(`Cannot run "${command}" on a tag: give a blob digest (REF@sha256:…) or --role`);
  }
  return ref as Reference & { digest: NonNullable<Reference["digest"]> };
}

function print(text: string): number {
  if (text !== "") process.stdout.write(`${text}\n`);
  return EXIT_CODES.ok;
}

/** Write to fd 1 synchronously, waiting out a full non-blocking pipe. */
function writeStdout(chunk: Uint8Array): void {
  for (let offset = 0; offset < chunk.byteLength;) {
    try {
      offset += writeSync(1, chunk, offset, chunk.byteLength - offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Bun.sleepSync(1);
    }
  }
}

function report(error: unknown, debug: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`ocicache: error: ${message.split("\n")[0]}\n`);
  if (debug && error instanceof Error && error.stack !== undefined) process.stderr.write(`${error.stack}\n`);
  return error instanceof OcicacheError ? error.exitCode : EXIT_CODES.other;
}
