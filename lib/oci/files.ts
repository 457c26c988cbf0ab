/**
 * Where a unikernel's files are in an image manifest: the unikraft image
 * spec (a plain tar layer whose files are named by `org.unikraft.kernel.*`
 * annotations, plus ROM layers) and kraftkit's older standalone layers.
 *
 * @module
 */

import { IntegrityError, NotFoundError } from "../errors.ts";
import type { Descriptor, Manifest } from "./manifest.ts";
import {
  COMPRESSED_TAR_MEDIA_TYPES,
  PATH_ANNOTATIONS,
  type Role,
  STANDALONE_MEDIA_TYPES,
  TAR_MEDIA_TYPES,
  WELL_KNOWN_PATHS,
} from "./names.ts";

export type { Role };

/** One file of a unikernel image: a whole layer, or a file inside a tar layer. */
export interface ImageFile {
  role: Role;
  /** The output file name: `kernel`, `initrd`, `kernel.dbg`, `rom0`, `rom1`, … */
  name: string;
  layer: Descriptor;
  /** The file's path inside the tar layer, when it is not the whole layer. */
  path?: string;
  /** How the tar layer is compressed, when it is. */
  compression?: "gzip" | "zstd";
  /** Looked for at the unikraft image spec's path because no annotation names it: it may not be there. */
  wellKnown?: boolean;
}

/**
 * The files of a unikernel image, in a stable order: kernel, initrd,
 * kernel.dbg (only with `debugKernel`), then ROMs as `rom0`, `rom1`, ….
 * Files inside tar layers are named by annotations (on the layer, or on the
 * manifest for its last tar layer); when none names a kernel or an initrd,
 * the image's last tar layer (plain or compressed) is to be searched at the
 * unikraft image spec's paths (`unikraft/bin/kernel`, …).
 *
 * @throws {IntegrityError} when an annotation names a file in a layer that is not a tar.
 */
export function findImageFiles(manifest: Manifest & { kind: "image" }, debugKernel = false): ImageFile[] {
  const files: ImageFile[] = [];
  const isTar = (layer: Descriptor) =>
    TAR_MEDIA_TYPES.includes(layer.mediaType) || COMPRESSED_TAR_MEDIA_TYPES[layer.mediaType] !== undefined;
  const member = (role: Role, layer: Descriptor, path: string, wellKnown = false): ImageFile => {
    const compression = COMPRESSED_TAR_MEDIA_TYPES[layer.mediaType];
    return {
      role,
      name: role,
      layer,
      path: normaliseTarPath(path),
      ...(compression !== undefined && { compression }),
      ...(wellKnown && { wellKnown }),
    };
  };
  const lastTar = manifest.layers.filter(isTar).at(-1);
  for (const layer of manifest.layers) {
    const role = STANDALONE_MEDIA_TYPES[layer.mediaType];
    if (role !== undefined && role !== "rom") files.push({ role, name: role, layer });
    for (const [key, annotated] of Object.entries(PATH_ANNOTATIONS)) {
      const path = layer.annotations?.[key];
      if (path === undefined) continue;
      if (!isTar(layer)) {
        throw new IntegrityError(
          `Cannot take "${path}" out of layer "${layer.digest}": media type "${layer.mediaType}" is not a tar`,
        );
      }
      files.push(member(annotated, layer, path));
    }
  }
  for (const [key, role] of Object.entries(PATH_ANNOTATIONS)) {
    const path = manifest.annotations[key];
    if (path !== undefined && lastTar !== undefined && !files.some((f) => f.role === role))
      files.push(member(role, lastTar, path));
  }
  if (lastTar !== undefined && !files.some((f) => f.role === "kernel" || f.role === "initrd")) {
    for (const [path, role] of Object.entries(WELL_KNOWN_PATHS)) files.push(member(role, lastTar, path, true));
  }
  const order: Role[] = ["kernel", "initrd", "kernel.dbg"];
  const unique = order.flatMap((role) => files.filter((f) => f.role === role).slice(0, 1));
  const roms = manifest.layers
    .filter((l) => STANDALONE_MEDIA_TYPES[l.mediaType] === "rom")
    .map((layer, i): ImageFile => ({ role: "rom", name: `rom${i}`, layer }));
  return [...unique.filter((f) => debugKernel || f.role !== "kernel.dbg"), ...roms];
}

/**
 * The files a pull asks for: every role, or only `roles` (`kernel.dbg` only
 * when asked for).
 *
 * @throws {NotFoundError} when the image has none of them.
 */
export function selectImageFiles(
  manifest: Manifest & { kind: "image" },
  options: { debugKernel?: boolean; roles?: Role[] },
  name: string,
): ImageFile[] {
  const files = findImageFiles(manifest, options.debugKernel || options.roles?.includes("kernel.dbg")).filter(
    (f) => options.roles === undefined || options.roles.includes(f.role),
  );
  if (files.length === 0) {
    const what = options.roles?.join(", ") ?? "kernel, initrd or rom";
    throw new NotFoundError(
      `Cannot find a ${what} in "${name}": no layer is a unikraft ${what} (see "Image formats" in docs/behaviour.md)`,
    );
  }
  return files;
}

/**
 * Whether `name` is the name this module gives a file of `role` (`kernel`, `initrd`, `kernel.dbg`, `romN`): a record
 * read back from the cache directory names no other.
 *
 * @example
 * ```ts
 * import { isImageFileName } from "./files.ts";
 * console.log(isImageFileName("rom", "rom0"), isImageFileName("kernel", "../kernel")); // true false
 * ```
 */
export function isImageFileName(role: unknown, name: unknown): boolean {
  if (typeof name !== "string") return false;
  return role === "rom"
    ? /^rom[0-9]{1,6}$/.test(name)
    : (role === "kernel" || role === "initrd" || role === "kernel.dbg") && name === role;
}

/** A tar member's name as stored: no leading `/` or `./` (how a layer names it, and how an annotation may). */
export function normaliseTarPath(path: string): string {
  return path.replace(/^(\.?\/)+/, "");
}

/**
 * The layers `files` come from, each once, in the order of the files: what a pull fetches for them.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { layersOf, type ImageFile } from "./files.ts";
 * const layer = { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${"a".repeat(64)}`, size: 1 };
 * const files = [{ layer }, { layer }] as unknown as ImageFile[];
 * assert.equal(layersOf(files).length, 1);
 * ```
 */
export function layersOf(files: ImageFile[]): ImageFile["layer"][] {
  return [...new Map(files.map((f) => [f.layer.digest, f.layer])).values()];
}
