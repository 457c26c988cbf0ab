/**
 * `ocicache lock`: resolve references once and record what they hold in the
 * lock file (every platform, each file's digest and size, the cache warmed on
 * the way); `--update` resolves them again; `--check` says which locked tags
 * point elsewhere now.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { EXIT_CODES, PolicyError, UsageError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { type PlatformWant, parsePlatform } from "../oci/platform.ts";
import type { Policy } from "../oci/policy.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import type { Cache } from "../pull/cache.ts";
import { DEFAULT_LOCK_FILE, emptyLock, type LockFile, lockEntry, readLock, writeLock } from "../pull/lock.ts";
import { pullAllPlatforms, pullImage } from "../pull/pull.ts";
import { parseSignatures } from "../store/index-file.ts";
import { lookupEntry } from "../store/refs.ts";
import { type Context, loadPolicy, openCache } from "./context.ts";
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
  const policy = loadPolicy(context);
  // Resolved anew: a tag the cache knows is asked about again (unless offline, where the cache is all there is).
  const label = names.length === 1 ? names[0]! : `${names.length} references`;
  await withCache(context, label, { refresh: !context.config.offline }, (cache) =>
    lockAll(cache, lock, names, {
      concurrency: context.config.concurrency,
      update: flags.update === true,
      ...(want !== undefined && { want }),
      ...(policy !== undefined && { policy }),
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
  options: { concurrency: number; want?: PlatformWant; update: boolean; policy?: Policy },
): Promise<{ hit: boolean }> {
  let hit = true;
  for (const name of names) {
    const ref = parseReference(name);
    const locked = options.update ? lock.references[name]?.platforms.map((p) => p.platform) : undefined;
    const wants = options.want !== undefined ? [options.want] : locked;
    const pull = { concurrency: options.concurrency, ...(options.policy !== undefined && { policy: options.policy }) };
    const results = wants === undefined ? await pullAllPlatforms(cache, ref, pull) : [];
    for (const want of wants ?? [])
      results.push(await pullImage(cache, ref, { ...pull, ...(want !== undefined && { platform: want }) }));
    const entry = lockEntry(results);
    // Under a policy, the signature that met it, as the pull kept it with the image.
    const kept = lookupEntry(cache.store, name);
    const signature = kept?.digest === entry.digest ? parseSignatures(kept)[0] : undefined;
    lock.references[name] = signature === undefined ? entry : { ...entry, signature };
    hit &&= results.every((r) => r.hit);
  }
  return { hit };
}

/**
 * Ask the registry where each locked tag points now (offline, the cache: what it last knew, no request); exit 1
 * when one moved. Offline, a tag the cache never saw is unknown, and said so. A reference locked with its signature
 * (`lock --policy`) is checked too: its signature gone, or another in its place, counts as moved (online only).
 * With a policy, each locked digest must still be accepted by it (exit 7 for one that is not).
 */
async function checkLock(context: Context, path: string, lock: LockFile): Promise<number> {
  const offline = context.config.offline;
  const cache = openCache(context, { refresh: !offline });
  const current = async (ref: Reference): Promise<Digest | undefined> => {
    if (!offline) return (await (await cache.client()).headManifest(ref, ref.tag!)).digest;
    return lookupEntry(cache.store, formatReference(ref))?.digest;
  };
  const policy = loadPolicy(context);
  const rows: CheckRow[] = [];
  for (const [name, entry] of Object.entries(lock.references)) {
    const ref: Reference = parseReference(name);
    const tag = ref.digest === undefined && ref.tag !== undefined;
    if (!tag && entry.signature === undefined && policy === undefined) continue;
    const now = tag ? await current(ref) : entry.digest;
    const row: CheckRow = {
      reference: name,
      lockedDigest: entry.digest,
      moved: now !== undefined && now !== entry.digest,
    };
    if (now !== undefined) row.currentDigest = now;
    if (entry.signature !== undefined && !offline) Object.assign(row, await signatureNow(cache, ref, entry));
    if (policy !== undefined) Object.assign(row, await policyNow(cache, ref, entry.digest, policy));
    rows.push(row);
  }
  const moved = rows.filter((r) => r.moved || r.signatureMoved);
  const refused = rows.filter((r) => r.accepted === false);
  const unknown = rows.filter((r) => r.currentDigest === undefined);
  if (context.flags.json) context.print(JSON.stringify(rows, null, 2));
  else
    context.print(
      [
        ...moved.map((r) =>
          r.moved
            ? `moved ${r.reference}: ${r.lockedDigest} -> ${r.currentDigest}`
            : `moved ${r.reference}: its signature ${r.lockedSignatureDigest} -> ${r.currentSignatureDigest ?? "gone"}`,
        ),
        ...refused.map((r) => `refused ${r.reference}: ${r.reason}`),
        ...unknown.map((r) => `unknown ${r.reference}: the cache has never resolved it (--offline)`),
        `${plural(rows.length, "locked tag")} in ${path}: ${moved.length} moved` +
          `${offline ? ", as the cache last knew them" : ""}`,
      ]
        .map(escapeControl)
        .join("\n"),
    );
  if (refused.length > 0) return EXIT_CODES.policy;
  return moved.length > 0 ? EXIT_CODES.other : EXIT_CODES.ok;
}

/**
 * Whether the policy accepts the locked digest of `ref` now: its signatures asked for anew from the registry, or
 * offline those the cache kept with it.
 */
async function policyNow(cache: Cache, ref: Reference, digest: Digest, policy: Policy): Promise<Partial<CheckRow>> {
  const { checkPolicy } = await import("../pull/signatures.ts");
  const name = formatReference(ref);
  const kept = cache.options.offline ? lookupEntry(cache.store, name) : undefined;
  try {
    await checkPolicy(cache, ref, { name, digest, images: {}, checked: false, ...(kept && { entry: kept }) }, policy);
    return { accepted: true };
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    return { accepted: false, reason: error.message };
  }
}

/** One row of `lock --check`. */
interface CheckRow {
  reference: string;
  lockedDigest: Digest;
  currentDigest?: Digest;
  moved: boolean;
  lockedSignatureDigest?: Digest;
  currentSignatureDigest?: Digest;
  signatureMoved?: boolean;
  /** With `--policy`: whether it accepts the locked digest now, and if not, why. */
  accepted?: boolean;
  reason?: string;
}

/**
 * The signature of the locked digest as the registry has it now: the locked one still there (a simple-signing
 * manifest under its tag, or a bundle among the image's referrers), another in its place, or none.
 */
async function signatureNow(
  cache: Cache,
  ref: Reference,
  entry: { digest: Digest; signature?: Digest },
): Promise<Partial<CheckRow>> {
  const { signaturesNow } = await import("../pull/signatures.ts");
  const now = await signaturesNow(cache, ref, entry.digest);
  const current = now.includes(entry.signature!) ? entry.signature : now[0];
  return {
    lockedSignatureDigest: entry.signature!,
    ...(current !== undefined && { currentSignatureDigest: current }),
    signatureMoved: current !== entry.signature,
  };
}
