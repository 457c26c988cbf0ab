/**
 * Cross-process lock files in the cache's `tmp/`: created with `O_EXCL`,
 * holding the owner's pid and start time, their mtime refreshed by the owner
 * every second. A lock is taken over when its owner is dead, or when it was
 * not refreshed for `LOCK_SILENCE_MS` (a frozen owner, or a lock planted with
 * the pid of a live process). A link in a lock's place is never followed.
 *
 * @module
 */

import { closeSync, lstatSync, lutimesSync, unlinkSync } from "node:fs";
import { isErrno, StoreError } from "../errors.ts";
import { openRegular, readAt } from "../oci/read.ts";
import { createExclusive } from "./writer.ts";

/** Options of `acquireLock`. */
export interface LockOptions {
  /** How long to wait for a live owner, in milliseconds. @default 30000 */
  timeoutMs?: number;
  /** Milliseconds between attempts. @default 10 */
  pollMs?: number;
}

/** A held lock; `release()` removes its file. */
export interface Lock {
  readonly path: string;
  release(): void;
}

/**
 * Take the lock file at `path`, waiting while a live process holds it.
 *
 * @throws {StoreError} when a live owner keeps it past the timeout.
 * @example
 * ```ts
 * import { acquireLock } from "./lock.ts";
 * const lock = await acquireLock("/tmp/example.lock");
 * try { } finally { lock.release(); }
 * ```
 */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<Lock> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    const lock = tryLock(path);
    if (lock !== undefined) return lock;
    if (Date.now() > deadline) {
      throw new StoreError(
        `Cannot lock "${path}": another ocicache process holds it (pid ${readOwner(path)?.pid ?? "unknown"})`,
      );
    }
    await Bun.sleep(options.pollMs ?? 10);
  }
}

/**
 * Take the lock file at `path` if no live process holds it (a dead owner's
 * lock is taken over), else return `undefined` at once.
 *
 * @throws {Error} the file system's error when `tmp/` cannot take the file.
 */
export function tryLock(path: string): Lock | undefined {
  const token = `${process.pid} ${Date.now()} ${Math.random().toString(36).slice(2)}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      createExclusive(path, token);
      const heartbeat = setInterval(() => refresh(path), HEARTBEAT_MS);
      heartbeat.unref();
      const lock = {
        path,
        release: () => {
          clearInterval(heartbeat);
          HELD.delete(lock);
          releaseLock(path, token);
        },
      };
      HELD.add(lock);
      return lock;
    } catch (error) {
      if (!isErrno(error, "EEXIST")) throw error;
    }
    if (!isStale(path)) return undefined;
    removeIfUnchanged(path);
  }
  return undefined;
}

/** Release every lock this process holds: on exit, so that a signal leaves none behind. */
export function releaseAllLocks(): void {
  for (const lock of [...HELD]) lock.release();
}

const HELD = new Set<Lock>();

/**
 * Whether a lock file is abandoned: not a regular file, its owner gone, or
 * not refreshed for `LOCK_SILENCE_MS`.
 */
export function isStale(path: string): boolean {
  let mtimeMs: number;
  try {
    const stat = lstatSync(path);
    if (!stat.isFile()) return true;
    mtimeMs = stat.mtimeMs;
  } catch {
    return false;
  }
  const silent = Date.now() - mtimeMs > LOCK_SILENCE_MS;
  const owner = readOwner(path);
  // An owner killed between creating the file and writing its pid leaves it empty.
  if (owner === undefined) return silent;
  return silent || !isAlive(owner.pid);
}

/** How often a held lock's mtime is refreshed. */
const HEARTBEAT_MS = 1_000;
/** A lock not refreshed for this long is abandoned, whatever pid it names. */
export const LOCK_SILENCE_MS = 10_000;

/** Refresh a held lock's mtime (never through a link). */
function refresh(path: string): void {
  const now = new Date();
  try {
    lutimesSync(path, now, now);
  } catch {
    // Taken over after all; its new owner refreshes it.
  }
}

/** The pid that a lock file names as its owner, if it names one. */
export function lockOwner(path: string): number | undefined {
  return readOwner(path)?.pid;
}

/** Whether a process with this pid exists (EPERM: it exists, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isErrno(error, "EPERM");
  }
}

function readOwner(path: string): { pid: number; text: string } | undefined {
  const text = readOwnerRecord(path);
  if (text === undefined) return undefined;
  const pid = Number(text.split(" ", 1)[0]);
  return Number.isInteger(pid) && pid > 0 ? { pid, text } : undefined;
}

/** The first bytes of a lock file, read without following a link. */
function readOwnerRecord(path: string): string | undefined {
  let fd: number;
  try {
    fd = openRegular(path);
  } catch {
    return undefined;
  }
  try {
    const buffer = Buffer.alloc(256);
    return buffer.toString("utf8", 0, readAt(fd, buffer, 0, buffer.length, 0));
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Remove a stale lock unless another process replaced it meanwhile. */
function removeIfUnchanged(path: string): void {
  const before = readOwnerRecord(path) ?? "";
  if ((readOwnerRecord(path) ?? "") === before) {
    try {
      unlinkSync(path);
    } catch {
      // Someone else took it over first.
    }
  }
}

function releaseLock(path: string, token: string): void {
  try {
    if (readOwnerRecord(path) === token) unlinkSync(path);
  } catch {
    // Already gone: a takeover of a lock whose owner looked dead.
  }
}
