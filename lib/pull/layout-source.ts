/**
 * A local OCI image layout as a source (`oci:DIR[:tag]`): read where it is,
 * never copied into the cache (docs/ARCHITECTURE.md, rule 3).
 *
 * @module
 */

import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { digestOf, hashFile } from "../oci/digest.ts";
import { IntegrityError, NotFoundError, UsageError } from "../errors.ts";
import { parseManifest, type Descriptor } from "../oci/manifest.ts";
import { readIndex } from "../store/index-file.ts";
import { placeFile, placeRange } from "./output.ts";
import { blobPath } from "../store/paths.ts";
import { describe, formatPlatform, selectManifest, type PlatformWant } from "../oci/platform.ts";
import type { PulledFile, PullResult } from "./pull.ts";
import type { LayoutSource } from "../oci/reference.ts";
import { findTarMember } from "../oci/tar.ts";
import { selectImageFiles } from "../oci/files.ts";
import { REF_NAME_ANNOTATION, type Role } from "../oci/names.ts";

/** Options of `pullLayout`. */
export interface LayoutPullOptions {
  platform?: PlatformWant;
  outDir?: string;
  link?: boolean;
  debugKernel?: boolean;
  roles?: Role[];
  /** Re-hash every blob before use. @default false */
  verify?: boolean;
}

/**
 * Take a unikernel's files from a local OCI layout. Manifests are always
 * verified; whole-layer files are given by their path in the layout.
 *
 * @throws {NotFoundError} when the layout, the tag or a file is missing.
 * @throws {UsageError} when a file inside a tar layer is asked for without `outDir`.
 * @example
 * ```ts
 * import { pullLayout } from "./layout-source.ts";
 * const result = (() => { try { return pullLayout({ dir: "./image", tag: "latest" }, { outDir: ".unikraft" }); } catch { return undefined; } })();
 * ```
 */
export function pullLayout(source: LayoutSource, options: LayoutPullOptions = {}): PullResult {
  const entries = readIndex(source.dir);
  const name = `oci:${source.dir}${source.tag === undefined ? "" : `:${source.tag}`}`;
  const entry = source.tag === undefined
    ? (entries.length === 1 ? entries[0] : undefined)
    : entries.find((e) => e.annotations[REF_NAME_ANNOTATION] === source.tag);
  if (entry === undefined) {
    const names = entries.map((e) => e.annotations[REF_NAME_ANNOTATION]).filter((n) => n !== undefined);
    throw new NotFoundError(`Cannot find ${source.tag === undefined ? "a single image" : `"${source.tag}"`} in "${source.dir}": it has ${names.length > 0 ? names.join(", ") : `${entries.length} unnamed images`}`);
  }
  const top = parseManifest(readBlob(source.dir, entry), entry.mediaType, name);
  let image = top;
  let manifest = entry.digest;
  let platform: string | undefined;
  if (top.kind === "index") {
    const chosen = selectManifest(top.manifests, options.platform ?? {}, name);
    image = parseManifest(readBlob(source.dir, chosen), chosen.mediaType, name);
    manifest = chosen.digest;
    platform = formatPlatform(describe(chosen));
  }
  if (image.kind !== "image") throw new IntegrityError(`Cannot use "${name}": an index inside an index is not a unikernel image`);
  const files = selectImageFiles(image, options, name);
  const pulled = files.map((file): PulledFile => {
    const layerPath = blobFile(source.dir, file.layer, options.verify === true);
    const base = { role: file.role, name: file.name, hit: true };
    if (file.path === undefined) {
      const path = options.outDir === undefined ? layerPath : join(options.outDir, file.name);
      if (options.outDir !== undefined) placeFile(layerPath, path, { link: options.link });
      return { ...base, path, digest: file.layer.digest, size: file.layer.size };
    }
    if (options.outDir === undefined) {
      throw new UsageError(`Cannot give a path for "${file.name}" of "${name}": it is inside a tar layer (use pull -o DIR)`);
    }
    const range = findTarMember(layerPath, file.path, file.layer.size);
    const path = join(options.outDir, file.name);
    const digest = placeRange(layerPath, range.offset, range.size, path);
    return { ...base, path, digest, size: range.size };
  });
  return { reference: name, digest: entry.digest, manifest, ...(platform !== undefined && { platform }), files: pulled, hit: true };
}

function readBlob(dir: string, descriptor: Descriptor): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(blobPath(dir, descriptor.digest));
  } catch (cause) {
    throw new NotFoundError(`Cannot read manifest "${descriptor.digest}" in "${dir}": it is missing`, { cause });
  }
  const actual = digestOf(bytes);
  if (actual !== descriptor.digest) throw new IntegrityError(`Cannot use manifest "${descriptor.digest}" in "${dir}": its content hashes to "${actual}"`);
  return bytes;
}

function blobFile(dir: string, descriptor: Descriptor, verify: boolean): string {
  const path = blobPath(dir, descriptor.digest);
  let size: number;
  try {
    size = statSync(path).size;
  } catch (cause) {
    throw new NotFoundError(`Cannot read blob "${descriptor.digest}" in "${dir}": it is missing`, { cause });
  }
  if (size !== descriptor.size) throw new IntegrityError(`Cannot use blob "${descriptor.digest}" in "${dir}": it has ${size} bytes, expected ${descriptor.size}`);
  if (verify && hashFile(path).digest !== descriptor.digest) {
    throw new IntegrityError(`Cannot use blob "${descriptor.digest}" in "${dir}": its content does not match its digest`);
  }
  return path;
}

