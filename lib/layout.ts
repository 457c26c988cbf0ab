/**
 * The cache's `index.json`: one descriptor per cached reference, named by
 * `org.opencontainers.image.ref.name`, so the cache is a valid OCI image
 * layout. Rewritten atomically (temp file and `rename`) under a lock.
 *
 * @module
 */

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isDigest, type Digest } from "./digest.ts";
import { acquireLock } from "./lock.ts";
import { tempName } from "./writer.ts";

/** The annotation that names a reference in an OCI image layout. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
/** When the registry last confirmed a tag's digest (ISO 8601). */
export const CHECKED_ANNOTATION = "io.ocicache.checked";
/** Files taken out of tar layers: JSON `{"<layer digest>:<path>": {digest, size}}`. */
export const DERIVED_ANNOTATION = "io.ocicache.derived";

/** One descriptor of `index.json`. */
export interface IndexEntry {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations: Record<string, string>;
}

/** A file taken out of a tar layer, stored as a blob of its own. */
export interface DerivedFile {
  digest: Digest;
  size: number;
}

/**
 * Read `index.json`; an absent or unreadable one is an empty cache index,
 * and descriptors that are not well formed are left out.
 *
 * @example
 * ```ts
 * import { readIndex } from "./layout.ts";
 * console.log(readIndex("/tmp/ocicache-example").length);
 * ```
 */
export function readIndex(root: string): IndexEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(root, "index.json"), "utf8"));
  } catch {
    return [];
  }
  const manifests = (parsed as { manifests?: unknown })?.manifests;
  if (!Array.isArray(manifests)) return [];
  return manifests.filter(isIndexEntry);
}

/** The entry whose ref name is `name`, if any. */
export function findEntry(entries: IndexEntry[], name: string): IndexEntry | undefined {
  return entries.find((entry) => entry.annotations[REF_NAME_ANNOTATION] === name);
}

/** Every derived file recorded for a layer path, across all references. */
export function findDerived(entries: IndexEntry[], layer: Digest, path: string): DerivedFile | undefined {
  const key = `${layer}:${path}`;
  for (const entry of entries) {
    const found = parseDerived(entry)[key];
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The derived files recorded on one entry. */
export function parseDerived(entry: IndexEntry): Record<string, DerivedFile> {
  const raw = entry.annotations[DERIVED_ANNOTATION];
  if (raw === undefined) return {};
  try {
    const parsed = JSON.parse(raw) as Record<string, unknown>;
    const out: Record<string, DerivedFile> = {};
    for (const [key, value] of Object.entries(parsed)) {
      const file = value as Partial<DerivedFile>;
      if (isDigest(file?.digest) && Number.isSafeInteger(file.size)) out[key] = { digest: file.digest, size: file.size! };
    }
    return out;
  } catch {
    return {};
  }
}

/**
 * Change `index.json` under its lock: read, `mutate`, write to a temp file,
 * fsync, rename. Concurrent pulls never lose each other's entries.
 *
 * @throws {Error} the file system's error when the cache cannot be written.
 */
export async function updateIndex(
  root: string,
  mutate: (entries: IndexEntry[]) => IndexEntry[],
): Promise<void> {
  const tmpDir = join(root, "tmp");
  const lock = await acquireLock(join(tmpDir, "index.json.lock"));
  try {
    const entries = mutate(readIndex(root));
    const body = `${JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: entries }, null, 2)}\n`;
    const tmpPath = join(tmpDir, tempName("index.json"));
    const fd = openSync(tmpPath, "wx", 0o644);
    try {
      writeSync(fd, body);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmpPath, join(root, "index.json"));
    } catch (error) {
      unlinkSync(tmpPath);
      throw error;
    }
  } finally {
    lock.release();
  }
}

/** Replace (or add) the entry named `name`, keeping its other annotations. */
export function upsertEntry(entries: IndexEntry[], entry: IndexEntry): IndexEntry[] {
  const name = entry.annotations[REF_NAME_ANNOTATION];
  const others = entries.filter((e) => e.annotations[REF_NAME_ANNOTATION] !== name);
  return [...others, entry];
}

function isIndexEntry(value: unknown): value is IndexEntry {
  const entry = value as IndexEntry;
  if (typeof entry !== "object" || entry === null) return false;
  if (!isDigest(entry.digest) || typeof entry.mediaType !== "string" || !Number.isSafeInteger(entry.size)) return false;
  if (entry.annotations === undefined) entry.annotations = {};
  return typeof entry.annotations === "object" && entry.annotations !== null;
}
