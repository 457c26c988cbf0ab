/**
 * The cache's `index.json`: one descriptor per cached reference, named by
 * `org.opencontainers.image.ref.name`, so the cache is a valid OCI image
 * layout. Rewritten atomically (temp file and `rename`) under a lock.
 *
 * @module
 */

import { type Digest, isDigest } from "../oci/digest.ts";
import { MAX_INDEX_BYTES } from "../oci/limits.ts";
import { DERIVED_ANNOTATION, OCI_INDEX, REF_NAME_ANNOTATION, SIGNATURES_ANNOTATION } from "../oci/names.ts";
import { readFileBounded } from "../oci/read.ts";
import { acquireLock } from "./lock.ts";
import { cachePaths } from "./paths.ts";
import { writeFileAtomic } from "./writer.ts";

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
 * import { readIndex } from "./index-file.ts";
 * console.log(readIndex("/tmp/ocicache-example").length);
 * ```
 */
export function readIndex(root: string): IndexEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileBounded(cachePaths(root).indexFile, MAX_INDEX_BYTES).toString("utf8"));
  } catch {
    return [];
  }
  const manifests = (parsed as { manifests?: unknown })?.manifests;
  if (!Array.isArray(manifests)) return [];
  return manifests.flatMap((value) => asIndexEntry(value) ?? []);
}

/** The entry whose ref name is `name`, if any. */
export function findEntry(entries: IndexEntry[], name: string): IndexEntry | undefined {
  return entries.find((entry) => entry.annotations[REF_NAME_ANNOTATION] === name);
}

/**
 * The tags of `registry/repository` that `index.json` under `root` holds references of, in its order.
 *
 * @example
 * ```ts
 * import { cachedTags } from "./index-file.ts";
 * console.log(cachedTags("/tmp/ocicache-example", "docker.io", "library/alpine"));
 * ```
 */
export function cachedTags(root: string, registry: string, repository: string): string[] {
  const prefix = `${registry}/${repository}:`;
  return readIndex(root).flatMap((entry) => {
    const name = entry.annotations[REF_NAME_ANNOTATION] ?? "";
    return name.startsWith(prefix) && !name.includes("@") ? [name.slice(prefix.length)] : [];
  });
}

/**
 * The key of a derived file in `io.ocicache.derived`: `<layer digest>:<path>`.
 *
 * @example
 * ```ts
 * import { splitDerivedKey } from "./index-file.ts";
 * console.log(splitDerivedKey("sha256:" + "a".repeat(64) + ":unikraft/bin/kernel")?.path); // unikraft/bin/kernel
 * ```
 */
export function splitDerivedKey(key: string): { layer: Digest; path: string } | undefined {
  const layer = key.slice(0, 71);
  return isDigest(layer) && key[71] === ":" && key.length > 72 ? { layer, path: key.slice(72) } : undefined;
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
      if (isDigest(file?.digest) && Number.isSafeInteger(file.size))
        out[key] = { digest: file.digest, size: file.size! };
    }
    return out;
  } catch {
    return {};
  }
}

/** The signature manifests an entry keeps (`io.ocicache.signatures`): at most 16 digests; none when malformed. */
export function parseSignatures(entry: IndexEntry): Digest[] {
  try {
    const list = JSON.parse(entry.annotations[SIGNATURES_ANNOTATION] ?? "[]") as unknown;
    return Array.isArray(list) ? list.filter(isDigest).slice(0, 16) : [];
  } catch {
    return [];
  }
}

/**
 * Change `index.json` under its lock: read, `mutate`, write to a temp file,
 * fsync, rename. Concurrent pulls never lose each other's entries.
 *
 * @throws {Error} the file system's error when the cache cannot be written.
 */
export async function updateIndex(root: string, mutate: (entries: IndexEntry[]) => IndexEntry[]): Promise<void> {
  const paths = cachePaths(root);
  const lock = await acquireLock(paths.indexLock);
  try {
    const entries = mutate(readIndex(root));
    const body = `${JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }, null, 2)}\n`;
    writeFileAtomic(paths.indexFile, body, { tempDir: paths.tmpDir });
  } finally {
    lock.release();
  }
}

/** Replace the entry of the same reference name by `entry` (with the annotations it carries), or add it. */
export function upsertEntry(entries: IndexEntry[], entry: IndexEntry): IndexEntry[] {
  const name = entry.annotations[REF_NAME_ANNOTATION];
  const others = entries.filter((e) => e.annotations[REF_NAME_ANNOTATION] !== name);
  return [...others, entry];
}

/** A parsed value as an entry, when it is a well-formed descriptor (a copy, with `{}` for absent annotations). */
export function asIndexEntry(value: unknown): IndexEntry | undefined {
  const entry = value as Partial<IndexEntry> | null;
  if (typeof entry !== "object" || entry === null) return undefined;
  if (!isDigest(entry.digest) || typeof entry.mediaType !== "string" || !Number.isSafeInteger(entry.size))
    return undefined;
  const annotations = entry.annotations ?? {};
  if (typeof annotations !== "object" || annotations === null) return undefined;
  return { ...(entry as IndexEntry), annotations };
}
