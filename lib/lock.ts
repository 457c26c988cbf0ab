/**
 * Cross-process lock files in the cache's `tmp/`: created with `O_EXCL`,
 * holding the owner's pid and start time, taken over when the owner is dead.
 *
 * @module
 */

import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { isErrno, StoreError } from "./errors.ts";

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
      throw new StoreError(`Cannot lock "${path}": another ocicache process holds it (pid ${readOwner(path)?.pid ?? "unknown"})`);
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
      const fd = openSync(path, "wx", 0o644);
      try {
        writeSync(fd, token);
      } finally {
        closeSync(fd);
      }
      const lock = { path, release: () => { HELD.delete(lock); releaseLock(path, token); } };
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

/** Whether the process that wrote a lock file is gone. */
export function isStale(path: string): boolean {
  const owner = readOwner(path);
  if (owner !== undefined) return !isAlive(owner.pid);
  try {
    // An owner killed between creating the file and writing its pid leaves it empty.
    return Date.now() - statSync(path).mtimeMs > EMPTY_LOCK_STALE_MS;
  } catch {
    return false;
  }
}

/** How old an empty lock file must be before it counts as abandoned. */
const EMPTY_LOCK_STALE_MS = 5_000;

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
  try {
    const text = readFileSync(path, "utf8");
    const pid = Number(text.split(" ", 1)[0]);
    return Number.isInteger(pid) && pid > 0 ? { pid, text } : undefined;
  } catch {
    return undefined;
  }
}

/** Remove a stale lock unless another process replaced it meanwhile. */
function removeIfUnchanged(path: string): void {
  const before = readOwner(path)?.text;
  if (before !== undefined && readOwner(path)?.text === before) {
    try {
      unlinkSync(path);
    } catch {
      // Someone else took it over first.
    }
  }
}

function releaseLock(path: string, token: string): void {
  try {
    if (readFileSync(path, "utf8") === token) unlinkSync(path);
  } catch {
    // Already gone: a takeover of a lock whose owner looked dead.
  }
}
