/**
 * What ocicache last wrote to each output path (`pull -o DIR`): the digest
 * and size of the content, and the file's identity (device, inode, mtime,
 * ctime) right after it was written. A pull that finds the same file still
 * there, unchanged since, with the content it wants, leaves it alone, so that
 * make sees no change (rule 10). Any change to the file moves its ctime, which
 * no one can set back, and the record no longer matches.
 *
 * @module
 */

import { lstatSync, type Stats } from "node:fs";
import { resolve } from "node:path";
import { type Digest, hashFile } from "../oci/digest.ts";
import { readSmallJson, removeEntriesUnless } from "./files.ts";
import type { Store } from "./store.ts";
import { writeFileAtomic } from "./writer.ts";

/** The record of one output file. */
interface OutputRecord {
  path: string;
  digest: Digest;
  size: number;
  dev: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
}

const MAX_RECORD_BYTES = 4096;

/**
 * Whether `dest` still holds what ocicache wrote there, and that is `digest` of `size` bytes. With `verify`, the
 * record is not taken on trust (anyone who can write the cache directory can rewrite it): the file is hashed too.
 */
export function holdsAlready(store: Store, dest: string, digest: Digest, size: number, verify = false): boolean {
  if (!store.trusted) return false;
  const path = resolve(dest);
  let stat: Stats;
  try {
    stat = lstatSync(path);
  } catch {
    return false;
  }
  if (!stat.isFile() || stat.size !== size) return false;
  const record = readRecord(store, path);
  return (
    record !== undefined &&
    record.path === path &&
    record.digest === digest &&
    record.size === size &&
    sameFile(record, stat) &&
    (!verify || hashOutput(path) === digest)
  );
}

/** Record that `dest` now holds `digest` (a cache that cannot be written records nothing). */
export function rememberOutput(store: Store, dest: string, digest: Digest, size: number): void {
  if (!store.trusted) return;
  const path = resolve(dest);
  try {
    const stat = lstatSync(path);
    if (!stat.isFile()) return;
    const record: OutputRecord = {
      path,
      digest,
      size,
      dev: stat.dev,
      ino: stat.ino,
      mtimeMs: stat.mtimeMs,
      ctimeMs: stat.ctimeMs,
    };
    writeFileAtomic(store.paths.output(path), JSON.stringify(record), { tempDir: store.tmpDir, durable: false });
  } catch {
    // Without a record, the next pull writes the output again: slower, never wrong.
  }
}

/** Remove the records of outputs that are gone or changed since: they would never match again. */
export function removeStaleRecords(store: Store): void {
  if (!store.trusted) return;
  removeEntriesUnless(store.paths.outputsDir, (_, path) => {
    const record = readRecordFile(path);
    if (record === undefined || typeof record.path !== "string" || store.paths.output(record.path) !== path)
      return false;
    try {
      return sameFile(record, lstatSync(record.path));
    } catch {
      return false; // The output is gone.
    }
  });
}

function hashOutput(path: string): Digest | undefined {
  try {
    return hashFile(path).digest;
  } catch {
    return undefined;
  }
}

function readRecord(store: Store, path: string): OutputRecord | undefined {
  return readRecordFile(store.paths.output(path));
}

function readRecordFile(file: string): OutputRecord | undefined {
  return readSmallJson(file, MAX_RECORD_BYTES) as OutputRecord | undefined;
}

function sameFile(record: OutputRecord, stat: Stats): boolean {
  return (
    record.dev === stat.dev &&
    record.ino === stat.ino &&
    record.mtimeMs === stat.mtimeMs &&
    record.ctimeMs === stat.ctimeMs
  );
}
