/**
 * The lock file: each reference resolved once, recorded, reviewed in a diff,
 * and used byte for byte until someone updates it. A pull of a locked
 * reference asks no registry about its tag: it pulls the locked digest, from
 * the cache when it is there. The file is JSON with its keys in a stable
 * order, written whole by rename.
 *
 * @module
 */

import { NotFoundError, UsageError } from "../errors.ts";
import { type Digest, isDigest } from "../oci/digest.ts";
import { isImageFileName } from "../oci/files.ts";
import { isObject } from "../oci/json.ts";
import { MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import type { Role } from "../oci/names.ts";
import type { PlatformWant } from "../oci/platform.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import { writeFileAtomic } from "../store/files.ts";

/** The lock file's name when none is given. */
export const DEFAULT_LOCK_FILE = "ocicache.lock";

/** The lock file. */
export interface LockFile {
  lockfileVersion: 1;
  /** By reference, as `formatReference` writes it (`docker.io/library/alpine:latest`). */
  references: Record<string, LockedReference>;
}

/** One locked reference: what it resolved to, and per platform what it holds. */
export interface LockedReference {
  /** The index (or manifest) the reference resolved to. */
  digest: Digest;
  /** The signature manifest that met the policy when it was locked (`lock --policy`). */
  signature?: Digest;
  platforms: LockedPlatform[];
}

/** One platform of a locked reference. */
export interface LockedPlatform {
  platform?: PlatformWant;
  manifest: Digest;
  files: Array<{ role: Role; name: string; digest: Digest; bytes: number }>;
}

/** What a pull does with a lock file. */
export interface LockUse {
  lock: LockFile;
  /** Where it was read from, for messages. */
  path: string;
  /** A reference that is not in the file is not found (`--locked`), instead of resolved as usual. */
  locked?: boolean;
}

/**
 * Read a lock file.
 *
 * @throws {UsageError} when it does not exist, or is not a lock file.
 * @example A lock file that does not exist is a usage error
 * ```ts
 * import assert from "node:assert";
 * import { UsageError, readLock } from "ocicache";
 * assert.throws(() => readLock("/nonexistent/ocicache.lock"), UsageError);
 * ```
 */
export function readLock(path: string): LockFile {
  let json: unknown;
  try {
    json = JSON.parse(readFileBounded(path, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8"));
  } catch (cause) {
    const reason = cause instanceof SyntaxError ? "it is not JSON" : describeReadError(cause);
    throw new UsageError(`Cannot read the lock file "${path}": ${reason}`, { cause });
  }
  const problem = lockProblem(json);
  if (problem !== undefined) throw new UsageError(`Cannot read the lock file "${path}": ${problem}`);
  return json as LockFile;
}

/**
 * A lock file with no reference, to add to.
 *
 * @example A new lock file holds nothing
 * ```ts
 * import assert from "node:assert";
 * import { emptyLock } from "ocicache";
 * assert.deepEqual(emptyLock().references, {});
 * ```
 */
export function emptyLock(): LockFile {
  return { lockfileVersion: 1, references: {} };
}

/**
 * Write `lock` to `path`: references in name order, keys in a fixed order, replaced whole by rename.
 *
 * @throws {UsageError} when it cannot be written.
 * @example Lock a reference, write the file, read it back
 * ```ts
 * import assert from "node:assert";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { emptyLock, lockEntry, readLock, writeLock } from "ocicache";
 * const digest = `sha256:${"a".repeat(64)}` as never;
 * const lock = emptyLock();
 * lock.references["docker.io/unikraft/nginx:1.25"] = lockEntry([{ digest, manifest: digest, files: [] }]);
 * const path = join(mkdtempSync(join(tmpdir(), "lock-")), "ocicache.lock");
 * writeLock(path, lock);
 * assert.equal(readLock(path).references["docker.io/unikraft/nginx:1.25"]!.digest, digest);
 * ```
 */
export function writeLock(path: string, lock: LockFile): void {
  const references: Record<string, LockedReference> = {};
  for (const name of Object.keys(lock.references).sort()) {
    const entry = lock.references[name]!;
    references[name] = {
      digest: entry.digest,
      ...(entry.signature !== undefined && { signature: entry.signature }),
      platforms: entry.platforms.map((p) => ({
        ...(p.platform !== undefined && { platform: orderPlatform(p.platform) }),
        manifest: p.manifest,
        files: p.files.map((f) => ({ role: f.role, name: f.name, digest: f.digest, bytes: f.bytes })),
      })),
    };
  }
  try {
    writeFileAtomic(path, `${JSON.stringify({ lockfileVersion: 1, references }, null, 2)}\n`);
  } catch (error) {
    throw new UsageError(`Cannot write the lock file "${path}": ${(error as Error).message}`, { cause: error });
  }
}

/** What a pull of one platform gave (a `PullResult`), as far as a lock file records it. */
export interface PulledPlatform {
  digest: Digest;
  manifest: Digest;
  platform?: PlatformWant;
  files: Array<{ role: Role; name: string; digest: Digest; size: number }>;
}

/**
 * The entry for a reference pulled on every platform (the results of `pullAllPlatforms`).
 *
 * @example One platform's entry
 * ```ts
 * import assert from "node:assert";
 * import { lockEntry } from "ocicache";
 * const digest = `sha256:${"b".repeat(64)}` as never;
 * assert.equal(lockEntry([{ digest, manifest: digest, files: [] }]).platforms.length, 1);
 * ```
 */
export function lockEntry(results: PulledPlatform[]): LockedReference {
  return {
    digest: results[0]!.digest,
    platforms: results.map((r) => ({
      ...(r.platform !== undefined && { platform: r.platform }),
      manifest: r.manifest,
      files: r.files.map((f) => ({ role: f.role, name: f.name, digest: f.digest, bytes: f.size })),
    })),
  };
}

/**
 * The reference a pull uses: a locked one pinned to its locked digest (its tag kept, for its name), else as given.
 *
 * @throws {NotFoundError} for a reference that is not locked, when `use.locked`.
 */
export function applyLock(ref: Reference, use: LockUse | undefined): Reference {
  if (use === undefined || ref.digest !== undefined) return ref;
  const name = formatReference(ref);
  const entry = use.lock.references[name];
  if (entry !== undefined) return { ...ref, digest: entry.digest };
  if (use.locked) throw new NotFoundError(`Cannot pull "${name}": it is not in the lock file "${use.path}" (--locked)`);
  return ref;
}

function orderPlatform(p: PlatformWant): PlatformWant {
  return {
    ...(p.os !== undefined && { os: p.os }),
    ...(p.architecture !== undefined && { architecture: p.architecture }),
    ...(p.variant !== undefined && { variant: p.variant }),
    ...(p.plat !== undefined && { plat: p.plat }),
  };
}

/**
 * What is wrong with a parsed lock file, if anything: every field of the shape `writeLock` writes, checked without
 * zod (a lock file is read on the warm path). A reference is named as `formatReference` names it (so no key such
 * as `__proto__` is ever dropped on the way), a platform holds only its four strings, a file names its role.
 */
function lockProblem(json: unknown): string | undefined {
  if (!isObject(json)) return "it is not a JSON object";
  if (json.lockfileVersion !== 1) return `"lockfileVersion" is not 1`;
  if (!isObject(json.references)) return `"references" is not an object`;
  for (const [name, entry] of Object.entries(json.references)) {
    if (!isReferenceName(name)) return `"${name}" is not a reference as ocicache writes one`;
    if (!isObject(entry) || !isDigest(entry.digest)) return `"${name}" has no digest`;
    if (entry.signature !== undefined && !isDigest(entry.signature))
      return `"${name}" has a "signature" that is not a digest`;
    if (!Array.isArray(entry.platforms)) return `"${name}" has no list of platforms`;
    for (const platform of entry.platforms) {
      const problem = platformProblem(platform);
      if (problem !== undefined) return `a platform of "${name}" ${problem}`;
    }
  }
  return undefined;
}

function platformProblem(platform: unknown): string | undefined {
  if (!isObject(platform) || !isDigest(platform.manifest) || !Array.isArray(platform.files))
    return "has no manifest digest or no files";
  const want = platform.platform;
  if (
    want !== undefined &&
    (!isObject(want) || !Object.entries(want).every(([k, v]) => PLATFORM_KEYS.includes(k) && typeof v === "string"))
  )
    return `has a "platform" that is not an object of ${PLATFORM_KEYS.join(", ")}`;
  for (const file of platform.files) {
    if (!isObject(file) || !isImageFileName(file.role, file.name)) return "has a file with no role and name";
    if (!isDigest(file.digest) || !Number.isSafeInteger(file.bytes) || (file.bytes as number) < 0)
      return `has a file "${String(file.name)}" with no digest or byte count`;
  }
  return undefined;
}

const PLATFORM_KEYS = ["os", "architecture", "variant", "plat"];

function isReferenceName(name: string): boolean {
  try {
    return formatReference(parseReference(name)) === name;
  } catch {
    return false;
  }
}
