/**
 * Small file helpers of the store and the outputs: opening without following
 * links, whole writes, ranges read in chunks, one line for a file-system
 * failure.
 *
 * @module
 */

import {
  closeSync,
  constants,
  fstatSync,
  futimesSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { SizeMismatchError } from "../errors.ts";
import { tempPath } from "./paths.ts";

/**
 * Open a file for reading without following a link, and only if it is a
 * regular file (a FIFO or a device planted in its place is refused, without
 * blocking on it).
 *
 * @throws {Error} the file system's error: `ELOOP` for a link, `EINVAL` for what is not a regular file.
 */
export function openRegular(path: string): number {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw Object.assign(new Error(`"${path}" is not a regular file`), { code: "EINVAL" });
  }
  return fd;
}

/** Set a marker file's mtime, creating it without following a link (anything planted in its place is replaced). */
export function stampFile(path: string, now: number): void {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  let fd: number;
  try {
    fd = openSync(path, flags, 0o644);
  } catch {
    unlinkSync(path);
    fd = openSync(path, flags | constants.O_EXCL, 0o644);
  }
  try {
    futimesSync(fd, new Date(now), new Date(now));
  } finally {
    closeSync(fd);
  }
}

/** The names in a directory; none when it is missing or cannot be read. */
export function listNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Remove each entry of `dir` that `keep` does not keep (a link is removed itself, never its target); one that
 * cannot be removed (a directory planted there) stays, and is never read as a file.
 */
export function removeEntriesUnless(dir: string, keep: (name: string, path: string) => boolean): void {
  for (const name of listNames(dir)) {
    const path = join(dir, name);
    if (keep(name, path)) continue;
    try {
      unlinkSync(path);
    } catch {
      // Not a file: left where it is.
    }
  }
}

/** A small JSON file: parsed when it is a regular file (no link followed) of at most `maxBytes`, else `undefined`. */
export function readSmallJson(path: string, maxBytes: number): unknown {
  let fd: number;
  try {
    fd = openRegular(path);
  } catch {
    return undefined;
  }
  try {
    if (fstatSync(fd).size > maxBytes) return undefined;
    return JSON.parse(readFileSync(fd, "utf8"));
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace `dest` with `text`: written to a new temp file in the cache's `tmp/` (`O_EXCL`), then renamed over it (a
 * link at `dest` is replaced, never followed).
 *
 * @throws {Error} the file system's error.
 */
export function replaceSmallFile(root: string, prefix: string, dest: string, text: string): void {
  const temp = tempPath(root, prefix);
  writeFileSync(temp, text, { flag: "wx", mode: 0o644 });
  renameSync(temp, dest);
}

/** Whether anything (a link too, never followed) is at `path`. */
export function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Write a whole chunk, looping over short writes; `onWritten` sees each
 * write so that a failure midway still tells how much landed.
 */
export function writeAll(fd: number, chunk: Uint8Array, onWritten?: (n: number) => void): number {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const n = writeSync(fd, chunk, offset, chunk.byteLength - offset);
    offset += n;
    onWritten?.(n);
  }
  return offset;
}

/** Read `length` bytes of a regular file from `offset`, in 1 MiB chunks (one buffer, reused). */
export function copyRange(source: string, offset: number, length: number, onChunk: (chunk: Uint8Array) => void): void {
  const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(length, 1)));
  const fd = openRegular(source);
  try {
    for (let done = 0; done < length; ) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
      if (n === 0) throw new SizeMismatchError(length, done, `range of "${source}"`);
      onChunk(buffer.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Bytes read at once when a file is copied or hashed again. */
export const COPY_CHUNK_BYTES = 1024 * 1024;

/** One line for a file-system failure: `read-only file system`, `no space left on device`. */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = {
    EROFS: "read-only file system",
    ENOSPC: "no space left on device",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EDQUOT: "disk quota exceeded",
    EIO: "input/output error",
    ELOOP: "a symbolic link is in the way",
  };
  return (code !== undefined ? reasons[code] : undefined) ?? (error instanceof Error ? error.message : String(error));
}
