/**
 * The pull commands: `pull`, `path` and `cat`, with progress on a TTY and the
 * automatic cleanup after a pull that fetched something.
 *
 * @module
 */

import { writeSync } from "node:fs";
import { EXIT_CODES, PolicyError, UsageError } from "../errors.ts";
import type { Role } from "../oci/names.ts";
import { formatPlatform, parsePlatform } from "../oci/platform.ts";
import { requirementsFor } from "../oci/policy.ts";
import { fileBody } from "../oci/read.ts";
import { parseLayoutSource, parseReference, type Reference } from "../oci/reference.ts";
import type { Cache, CacheOptions } from "../pull/cache.ts";
import { DEFAULT_LOCK_FILE, type LockUse, readLock } from "../pull/lock.ts";
import {
  type PullOptions,
  type PullResult,
  pullAllPlatforms,
  pullBlob,
  pullImage,
  pullJson,
  pullLayout,
} from "../pull/pull.ts";
import { type Context, cleanupLimits, loadPolicy, one, openCache } from "./context.ts";
import { type Input, parseInput } from "./inputs.ts";
import { Progress, type ProgressMode, type ProgressSink } from "./progress.ts";
import { escapeControl, isTerminal } from "./text.ts";

/** The commands of this module, by name. */
export const PULL_COMMANDS = { pull: runPull, path: runPath, cat: runCat };

async function runPull(context: Context): Promise<number> {
  const { flags, args } = context;
  if (args.length === 0) throw new UsageError("Cannot run pull: expected one or more references");
  if (flags.output !== undefined && args.length > 1)
    throw new UsageError(`Cannot pull ${args.length} references into one -o DIR: pull each into its own`);
  if (flags["all-platforms"] && (flags.platform !== undefined || flags.plat !== undefined))
    throw new UsageError("Cannot choose a platform with --all-platforms");
  // Every input is parsed before anything is fetched: one bad reference touches nothing.
  const inputs = args.map((arg) => parseInput("pull", arg));
  const lock = lockUse(context);
  const policy = loadPolicy(context);
  const options = {
    ...(lock !== undefined && { lock }),
    ...(policy !== undefined && { policy }),
    platform: parsePlatform(flags.platform, flags.plat),
    ...(flags.output !== undefined && { outDir: flags.output }),
    link: flags.link === true,
    debugKernel: flags["debug-kernel"] === true,
    concurrency: context.config.concurrency,
  };
  const label = args.length === 1 ? args[0]! : `${args.length} images`;
  const outcomes = await withCache(context, label, {}, async (cache) => {
    const settled = await Promise.allSettled(
      inputs.map((input) => pullParsed(context, cache, input, options, flags["all-platforms"] === true)),
    );
    const results = settled.flatMap((s) => (s.status === "fulfilled" ? s.value : []));
    return { settled, results, hit: results.every((r) => r.hit) };
  });
  const failures = outcomes.settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
  printResults(context, outcomes.results, args.length > 1 || flags["all-platforms"] === true);
  if (failures.length === 0) return EXIT_CODES.ok;
  // With several references, each failure gets its line; the first decides the exit code.
  for (const failure of failures.slice(1)) context.warn(`another pull failed: ${(failure as Error).message}`);
  throw failures[0];
}

async function runPath(context: Context): Promise<number> {
  const { flags } = context;
  const input = one(context);
  const role = flags.role as Role | undefined;
  if (role === undefined && parseLayoutSource(input) === undefined) {
    const pinned = requireDigest(parseReference(input), "path");
    checkBlobPolicy(context, pinned);
    const blob = await withCache(context, input, {}, (cache) => pullBlob(cache, pinned));
    if (blob.path === undefined || !blob.cached)
      throw new UsageError(`Cannot give a path for "${input}": the cache cannot be written`);
    context.print(blob.path);
    return EXIT_CODES.ok;
  }
  const result = await pullInput(context, "path", input, {
    platform: parsePlatform(flags.platform, flags.plat),
    roles: [role ?? "kernel"],
  });
  context.print(result.files[0]!.path);
  return EXIT_CODES.ok;
}

async function runCat(context: Context): Promise<number> {
  try {
    return await catBlob(context);
  } catch (error) {
    // The reader stopped reading (`| head`): not an error of ours; a partial download stays to resume.
    if ((error as NodeJS.ErrnoException).code === "EPIPE") return EXIT_CODES.ok;
    throw error;
  }
}

async function catBlob(context: Context): Promise<number> {
  const { flags } = context;
  const input = one(context);
  const role = flags.role as Role | undefined;
  let path: string | undefined;
  if (role !== undefined) {
    const platform = parsePlatform(flags.platform, flags.plat);
    path = (await pullInput(context, "cat", input, { platform, roles: [role] })).files[0]!.path;
  } else {
    const ref = requireDigest(parseReference(input), "cat");
    checkBlobPolicy(context, ref);
    // With no descriptor to give the size, a cached copy is re-hashed before it goes out (cat reads it all anyway).
    // Downloaded bytes go out as they arrive; a blob the cache has (or another process fetched) goes out after.
    let streamed = false;
    const blob = await withCache(context, input, { verify: true }, (cache) =>
      pullBlob(cache, ref, {
        onChunk: (chunk) => {
          streamed = true;
          writeStdout(chunk);
        },
      }),
    );
    if (streamed) return EXIT_CODES.ok;
    path = blob.path;
  }
  await Bun.write(Bun.stdout, fileBody(path!));
  return EXIT_CODES.ok;
}

/** A registry reference through the cache, or an `oci:DIR` source read in place. */
async function pullInput(
  context: Context,
  command: "path" | "cat",
  input: string,
  options: PullOptions,
): Promise<PullResult> {
  // Parsed before the cache is opened: bad input touches nothing.
  const parsed = parseInput(command, input);
  const lock = lockUse(context);
  const policy = loadPolicy(context);
  const withLock = { ...options, ...(lock !== undefined && { lock }), ...(policy !== undefined && { policy }) };
  return withCache(context, input, {}, async (cache) => (await pullParsed(context, cache, parsed, withLock))[0]!);
}

/** One input's files: a layout read in place (re-hashed with `--verify`), or a reference's, on every platform. */
async function pullParsed(
  context: Context,
  cache: Cache,
  input: Input,
  options: PullOptions,
  allPlatforms = false,
): Promise<PullResult[]> {
  if ("layout" in input)
    return [await pullLayout(cache, input.layout, { ...options, verify: context.flags.verify === true })];
  return allPlatforms ? pullAllPlatforms(cache, input.ref, options) : [await pullImage(cache, input.ref, options)];
}

/**
 * The files pulled: JSON (an object for one image, a list for several), else one path per line, labelled with the
 * role on a terminal (`kernel  /path`); through a pipe, bare paths for scripts.
 */
function printResults(context: Context, results: PullResult[], several: boolean): void {
  if (context.flags.json) {
    const json = results.map(pullJson);
    context.print(JSON.stringify(several ? json : json[0], null, 2));
    return;
  }
  const files = results.flatMap((r) => r.files);
  if (context.flags.output !== undefined || !isTerminal(1)) {
    context.print(files.map((f) => f.path).join("\n"));
    return;
  }
  const width = Math.max(...files.map((f) => f.name.length));
  const lines = results.flatMap((r) => [
    // The platform is the registry's text (rule 9): escaped before it reaches the terminal.
    ...(several
      ? [escapeControl(`${r.reference}${r.platform === undefined ? "" : ` (${formatPlatform(r.platform)})`}`)]
      : []),
    ...r.files.map((f) => `${several ? "  " : ""}${f.name.padEnd(width)}  ${f.path}`),
  ]);
  context.print(lines.join("\n"));
}

/** The lock file the pull commands use, if one is set (`--lock-file`, `OCICACHE_LOCK_FILE`, `lockFile`). */
/**
 * A blob named by its digest has no image whose signature could be checked: under a policy that asks for more than
 * `insecureAcceptAnything` for its repository, it is refused.
 */
function checkBlobPolicy(context: Context, ref: Reference): void {
  const policy = loadPolicy(context);
  if (policy === undefined || requirementsFor(policy, ref).every((r) => r.type === "insecureAcceptAnything")) return;
  throw new PolicyError(`Cannot hand out blob "${ref.digest}" by its digest: the policy asks for a signed image`);
}

function lockUse(context: Context): LockUse | undefined {
  // --locked without a lock file named takes the one lock writes, as cargo --locked takes Cargo.lock.
  const path = context.config.lockFile ?? (context.flags.locked ? DEFAULT_LOCK_FILE : undefined);
  if (path === undefined) return undefined;
  return { lock: readLock(path), path, locked: context.flags.locked === true };
}

/** Open the cache from the configuration, run, draw progress on a TTY, then clean up automatically when due. */
export async function withCache<T extends { hit: boolean }>(
  context: Context,
  label: string,
  overrides: Partial<CacheOptions>,
  run: (cache: Cache) => Promise<T>,
): Promise<T> {
  const { flags, config } = context;
  const mode = progressMode(context);
  // Made on the first progress, a miss: a hit never asks whether stderr is a terminal.
  let progress: Progress | undefined;
  const shown = () => {
    if (mode !== undefined) progress ??= new Progress(label, stderrSink(mode));
    return progress;
  };
  const cache = openCache(context, {
    refresh: flags.refresh === true,
    verify: flags.verify === true,
    onWarning: (message) => {
      progress?.done();
      if (mode !== "json" || flags.quiet || !shown()!.warn(message)) context.warn(message);
    },
    onWait: ({ digest, pid }) => shown()?.wait(digest, pid),
    onProgress: (update) => shown()?.update(update),
    ...overrides,
  });
  let result: T;
  try {
    result = await run(cache);
  } finally {
    progress?.done();
  }
  progress?.finish(label);
  if (!result.hit && cache.writable) {
    try {
      const { autoClean } = await import("../store/cleanup.ts");
      await autoClean(cache.store, cleanupLimits(config), config.autoCleanIntervalMs);
    } catch (error) {
      context.warn(`Cannot clean the cache automatically: ${(error as Error).message}`);
    }
  }
  return result;
}

function requireDigest(ref: Reference, command: string): Reference & { digest: NonNullable<Reference["digest"]> } {
  if (ref.digest === undefined) {
    throw new UsageError(`Cannot run "${command}" on a tag: give a blob digest (REF@sha256:…) or --role`);
  }
  return ref as Reference & { digest: NonNullable<Reference["digest"]> };
}

/**
 * How progress is shown, or `undefined` for not at all (`-q`; `--json` unless `--progress` asks): `--progress auto`
 * draws a line on a terminal and writes a log elsewhere, `plain` writes the log, `json` a JSON line per event.
 */
function progressMode(context: Context): ProgressMode | "auto" | undefined {
  const { progress, quiet, json } = context.flags;
  if (quiet) return undefined;
  if (progress === undefined) return json ? undefined : "auto";
  return progress === "plain" ? "log" : (progress as "auto" | "json");
}

function stderrSink(mode: ProgressMode | "auto"): ProgressSink {
  return {
    write: (text) => process.stderr.write(text),
    mode: mode === "auto" ? (isTerminal(2) ? "terminal" : "log") : mode,
    columns: () => process.stderr.columns || 80,
  };
}

/** Write to fd 1 synchronously, waiting out a full non-blocking pipe. */
function writeStdout(chunk: Uint8Array): void {
  for (let offset = 0; offset < chunk.byteLength; ) {
    try {
      offset += writeSync(1, chunk, offset, chunk.byteLength - offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Bun.sleepSync(1);
    }
  }
}
