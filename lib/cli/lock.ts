/**
 * `ocicache lock`: resolve references once and record what they hold in the
 * lock file (every platform, each file's digest and size, the cache warmed on
 * the way); `--update` resolves them again; `--check` says which locked tags
 * point elsewhere now.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { EXIT_CODES, UsageError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { type PlatformWant, parsePlatform } from "../oci/platform.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import type { Cache } from "../pull/cache.ts";
import { DEFAULT_LOCK_FILE, emptyLock, type LockFile, lockEntry, readLock, writeLock } from "../pull/lock.ts";
import { pullAllPlatforms, pullImage } from "../pull/pull.ts";
import { lookupEntry } from "../store/refs.ts";
import { type Context, openCache } from "./context.ts";
import { parseRegistryInput } from "./inputs.ts";
import { withCache } from "./pull.ts";
import { escapeControl, plural } from "./text.ts";

/** Run `lock`. */
export async function runLock(context: Context): Promise<number> {
  const { flags, args } = context;
  const path = context.config.lockFile ?? DEFAULT_LOCK_FILE;
  const chosen = flags.platform !== undefined || flags.plat !== undefined;
  const want = chosen ? parsePlatform(flags.platform, flags.plat) : undefined;
  if (flags.check) {
    if (args.length > 0 || flags.update) throw new UsageError("Cannot run lock --check with references or --update");
    return checkLock(context, path, readLock(path));
  }
  if (args.length === 0 && !flags.update)
    throw new UsageError("Cannot run lock: expected one or more references (or --update, or --check)");
  const lock = existsSync(path) ? readLock(path) : emptyLock();
  const names =
    args.length > 0
      ? args.map((arg) => formatReference(parseRegistryInput("lock", arg)))
      : Object.keys(lock.references);
  if (flags.update) {
    const missing = names.find((name) => lock.references[name] === undefined);
    if (missing !== undefined) throw new UsageError(`Cannot update "${missing}": it is not in "${path}"`);
  }
  const before = new Map(names.map((name) => [name, lock.references[name]?.digest]));
  // Resolved anew: a tag the cache knows is asked about again (unless offline, where the cache is all there is).
  const label = names.length === 1 ? names[0]! : `${names.length} references`;
  await withCache(context, label, { refresh: !context.config.offline }, (cache) =>
    lockAll(cache, lock, names, {
      concurrency: context.config.concurrency,
      update: flags.update === true,
      ...(want !== undefined && { want }),
    }),
  );
  writeLock(path, lock);
  if (flags.json) {
    context.print(
      JSON.stringify(
        names.map((name) => ({ reference: name, ...lock.references[name]! })),
        null,
        2,
      ),
    );
    return EXIT_CODES.ok;
  }
  const lines = names.map((name) => {
    const was = before.get(name);
    const now = lock.references[name]!.digest;
    return was === undefined
      ? `locked ${name} ${now}`
      : was === now
        ? `unchanged ${name} ${now}`
        : `updated ${name} ${was} -> ${now}`;
  });
  context.print(lines.map(escapeControl).join("\n"));
  return EXIT_CODES.ok;
}

/**
 * Resolve each reference anew (no lock applied) and record it: the platforms asked for (`--platform`, `--plat`),
 * else with `--update` the platforms it has locked (the ones a build targets), else every platform.
 */
async function lockAll(
  cache: Cache,
  lock: LockFile,
  names: string[],
  options: { concurrency: number; want?: PlatformWant; update: boolean },
): Promise<{ hit: boolean }> {
  let hit = true;
  for (const name of names) {
    const ref = parseReference(name);
    const locked = options.update ? lock.references[name]?.platforms.map((p) => p.platform) : undefined;
    const wants = options.want !== undefined ? [options.want] : locked;
    const { concurrency } = options;
    const results = wants === undefined ? await pullAllPlatforms(cache, ref, { concurrency }) : [];
    for (const want of wants ?? [])
      results.push(await pullImage(cache, ref, { concurrency, ...(want !== undefined && { platform: want }) }));
    lock.references[name] = lockEntry(results);
    hit &&= results.every((r) => r.hit);
  }
  return { hit };
}

/**
 * Ask the registry where each locked tag points now (offline, the cache: what it last knew, no request); exit 1
 * when one moved. Offline, a tag the cache never saw is unknown, and said so.
 */
async function checkLock(context: Context, path: string, lock: LockFile): Promise<number> {
  const offline = context.config.offline;
  const cache = openCache(context, { refresh: !offline });
  const current = async (ref: Reference): Promise<Digest | undefined> => {
    if (!offline) return (await (await cache.client()).headManifest(ref, ref.tag!)).digest;
    return lookupEntry(cache.store, formatReference(ref))?.digest;
  };
  const rows: Array<{ reference: string; lockedDigest: Digest; currentDigest?: Digest; moved: boolean }> = [];
  for (const [name, entry] of Object.entries(lock.references)) {
    const ref: Reference = parseReference(name);
    if (ref.digest !== undefined || ref.tag === undefined) continue;
    const now = await current(ref);
    const row = { reference: name, lockedDigest: entry.digest, moved: now !== undefined && now !== entry.digest };
    rows.push(now === undefined ? row : { ...row, currentDigest: now });
  }
  const moved = rows.filter((r) => r.moved);
  const unknown = rows.filter((r) => r.currentDigest === undefined);
  if (context.flags.json) context.print(JSON.stringify(rows, null, 2));
  else
    context.print(
      [
        ...moved.map((r) => `moved ${r.reference}: ${r.lockedDigest} -> ${r.currentDigest}`),
        ...unknown.map((r) => `unknown ${r.reference}: the cache has never resolved it (--offline)`),
        `${plural(rows.length, "locked tag")} in ${path}: ${moved.length} moved` +
          `${offline ? ", as the cache last knew them" : ""}`,
      ]
        .map(escapeControl)
        .join("\n"),
    );
  return moved.length > 0 ? EXIT_CODES.other : EXIT_CODES.ok;
}
