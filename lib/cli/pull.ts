/**
 * The pull commands: `pull`, `path` and `cat`, with progress on a TTY and the
 * automatic cleanup after a pull that fetched something.
 *
 * @module
 */

import { writeSync } from "node:fs";
import { Cache, type BlobProgress, type CacheOptions } from "../pull/cache.ts";
import { cacheOptions, one, type Context } from "./context.ts";
import { EXIT_CODES, UsageError } from "../errors.ts";
import { ProgressBar } from "./progress.ts";
import { parsePlatform } from "../oci/platform.ts";
import { pullBlob, pullImage, pullJson, pullLayout, type PullOptions, type PullResult } from "../pull/pull.ts";
import { parseLayoutSource, parseReference, type Reference } from "../oci/reference.ts";
import type { Role } from "../oci/names.ts";

const ROLES: Role[] = ["kernel", "initrd", "kernel.dbg", "rom"];

/** The commands of this module, by name. */
export const PULL_COMMANDS = { pull: runPull, path: runPath, cat: runCat };

async function runPull(context: Context): Promise<number> {
  const { flags } = context;
  const input = one(context);
  const options = {
    platform: parsePlatform(flags.platform, flags.plat),
    ...(flags.output !== undefined && { outDir: flags.output }),
    link: flags.link === true,
    debugKernel: flags["debug-kernel"] === true,
    concurrency: context.config.concurrency,
  };
  return printResult(context, await pullInput(context, input, options));
}

async function runPath(context: Context): Promise<number> {
  const { flags } = context;
  const input = one(context);
  const role = parseRole(flags.role);
  if (role === undefined && parseLayoutSource(input) === undefined) {
    const pinned = requireDigest(parseReference(input), "path");
    const blob = await withCache(context, input, {}, (cache) => pullBlob(cache, pinned));
    if (blob.path === undefined || !blob.cached)
      throw new UsageError(`Cannot give a path for "${input}": the cache cannot be written`);
    context.print(blob.path);
    return EXIT_CODES.ok;
  }
  const result = await pullInput(context, input, {
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
  const role = parseRole(flags.role);
  let path: string | undefined;
  if (role !== undefined) {
    path = (await pullInput(context, input, { platform: parsePlatform(flags.platform, flags.plat), roles: [role] }))
      .files[0]!.path;
  } else {
    const ref = requireDigest(parseReference(input), "cat");
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
  await Bun.write(Bun.stdout, Bun.file(path!));
  return EXIT_CODES.ok;
}

/** A registry reference through the cache, or an `oci:DIR` source read in place. */
function pullInput(context: Context, input: string, options: PullOptions): Promise<PullResult> {
  // Parsed before the cache is opened: bad input touches nothing.
  const layout = parseLayoutSource(input);
  const ref = layout === undefined ? parseReference(input) : undefined;
  return withCache(context, input, {}, (cache) =>
    ref !== undefined
      ? pullImage(cache, ref, options)
      : pullLayout(cache, layout!, { ...options, verify: context.flags.verify === true }),
  );
}

function printResult(context: Context, result: PullResult): number {
  context.print(
    context.flags.json ? JSON.stringify(pullJson(result), null, 2) : result.files.map((f) => f.path).join("\n"),
  );
  return EXIT_CODES.ok;
}

/** Open the cache from the configuration, run, draw progress on a TTY, then clean up automatically when due. */
async function withCache<T extends { hit: boolean }>(
  context: Context,
  label: string,
  overrides: Partial<CacheOptions>,
  run: (cache: Cache) => Promise<T>,
): Promise<T> {
  const { flags, config } = context;
  // The bar is made on the first progress, a miss: asking whether stderr is a TTY costs a start about 20 ms.
  let bar: ProgressBar | undefined;
  let drawing = !flags.quiet && !flags.json;
  const progress = (update: BlobProgress) => {
    if (bar === undefined && drawing) {
      drawing = process.stderr.isTTY === true;
      if (drawing) bar = new ProgressBar(label, (text) => process.stderr.write(text));
    }
    bar?.update(update);
  };
  const cache = new Cache({
    ...cacheOptions(config),
    refresh: flags.refresh === true,
    verify: flags.verify === true,
    onWarning: (message) => {
      bar?.done();
      context.warn(message);
    },
    onProgress: progress,
    ...overrides,
  });
  let result: T;
  try {
    result = await run(cache);
  } finally {
    bar?.done();
  }
  if (!result.hit && cache.writable) {
    try {
      const { autoClean } = await import("../store/cleanup.ts");
      await autoClean(
        cache.store,
        { maxAgeMs: config.maxAgeMs, maxSizeBytes: config.maxSizeBytes, graceMs: config.graceMs },
        config.autoCleanIntervalMs,
      );
    } catch (error) {
      context.warn(`Cannot clean the cache automatically: ${(error as Error).message}`);
    }
  }
  return result;
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
