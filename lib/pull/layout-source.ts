/**
 * A local OCI image layout as a source (`oci:DIR[:tag]`): read where it is,
 * never copied into the cache (docs/ARCHITECTURE.md, rule 3). Manifests are
 * always verified; blobs by their size, and with `verify` by their digest.
 * Every file is read as the cache's are: a regular file (a link, a FIFO or a
 * device is refused, never followed or waited on), within its bound.
 *
 * @module
 */

import { lstatSync } from "node:fs";
import { IntegrityError, NotFoundError } from "../errors.ts";
import { digestOf, hashFile } from "../oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../oci/limits.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { REF_NAME_ANNOTATION } from "../oci/names.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import type { LayoutSource } from "../oci/reference.ts";
import { readIndex } from "../store/index-file.ts";
import { layoutBlobPath } from "../store/store.ts";
import type { Cache } from "./cache.ts";
import type { ImageSource, SourceManifest } from "./source.ts";

/**
 * The image of a layout directory: the entry of `index.json` named `tag`,
 * or its only entry when no tag is given.
 *
 * @example
 * ```ts
 * import { layoutSource } from "./layout-source.ts";
 * const source = layoutSource({ dir: "./image", tag: "latest" }, false, undefined);
 * console.log(source.name); // oci:./image:latest
 * ```
 */
export function layoutSource(layout: LayoutSource, verify: boolean, cache: Cache | undefined): ImageSource {
  const { dir, tag } = layout;
  const name = `oci:${dir}${tag === undefined ? "" : `:${tag}`}`;
  return {
    name,
    verify,
    async top() {
      const entries = readIndex(dir);
      const entry =
        tag === undefined
          ? entries.length === 1
            ? entries[0]
            : undefined
          : entries.find((e) => e.annotations[REF_NAME_ANNOTATION] === tag);
      if (entry === undefined) {
        const names = entries.map((e) => e.annotations[REF_NAME_ANNOTATION]).filter((n) => n !== undefined);
        throw new NotFoundError(
          `Cannot find ${tag === undefined ? "a single image" : `"${tag}"`} in "${dir}": it has ` +
            `${names.length > 0 ? names.join(", ") : `${entries.length} unnamed images`}`,
        );
      }
      return readManifest(dir, entry);
    },
    manifest: async (descriptor) => readManifest(dir, descriptor),
    async blob(descriptor) {
      return { path: checkedBlob(dir, descriptor, verify), hit: true, cached: false };
    },
    // Read in place: nothing downloads, and nothing of the layout is recorded. A file inside a layer goes into the
    // cache only when it needs a path there (no output directory).
    announce: () => {},
    fallbackFor: () => undefined,
    tees: () => new Map(),
    linkable: () => true,
    members: (_layer, dest) => ({
      trustRecorded: false,
      keep: cache !== undefined && dest === undefined,
      record: false,
    }),
  };
}

function readManifest(dir: string, descriptor: Descriptor): SourceManifest {
  let bytes: Uint8Array;
  try {
    bytes = readFileBounded(layoutBlobPath(dir, descriptor.digest), MAX_MANIFEST_BYTES);
  } catch (cause) {
    throw layoutFileError(`Cannot read manifest "${descriptor.digest}" in "${dir}"`, cause);
  }
  const actual = digestOf(bytes);
  if (actual !== descriptor.digest)
    throw new IntegrityError(
      `Cannot use manifest "${descriptor.digest}" in "${dir}": its content hashes to "${actual}"`,
    );
  return { digest: descriptor.digest, bytes, mediaType: descriptor.mediaType, hit: true };
}

function checkedBlob(dir: string, descriptor: Descriptor, verify: boolean): string {
  const path = layoutBlobPath(dir, descriptor.digest);
  let size: number;
  try {
    const stat = lstatSync(path);
    if (!stat.isFile()) throw Object.assign(new Error("not a regular file"), { code: "EINVAL" });
    size = stat.size;
  } catch (cause) {
    throw layoutFileError(`Cannot read blob "${descriptor.digest}" in "${dir}"`, cause);
  }
  if (size !== descriptor.size)
    throw new IntegrityError(
      `Cannot use blob "${descriptor.digest}" in "${dir}": it has ${size} bytes, expected ${descriptor.size}`,
    );
  if (verify && hashFile(path).digest !== descriptor.digest) {
    throw new IntegrityError(
      `Cannot use blob "${descriptor.digest}" in "${dir}": its content does not match its digest`,
    );
  }
  return path;
}

/** A layout's file that is missing is not found; one that is not a regular file, or is over its bound, is bad. */
function layoutFileError(action: string, cause: unknown): Error {
  const reason = describeReadError(cause);
  const missing = reason === "it does not exist";
  return missing
    ? new NotFoundError(`${action}: it is missing`, { cause })
    : new IntegrityError(`${action}: ${reason}`, { cause });
}
