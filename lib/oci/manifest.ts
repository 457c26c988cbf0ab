/**
 * Manifests as untrusted input, and where a unikernel's files are in them:
 * the unikraft image spec (a plain tar layer named by `org.unikraft.kernel.*`
 * annotations, plus ROM layers) and kraftkit's older standalone layers.
 *
 * @module
 */

import { isDigest, type Digest } from "./digest.ts";
import { IntegrityError, NotFoundError } from "../errors.ts";
import { MAX_BLOB_BYTES } from "./limits.ts";

/** An OCI content descriptor (image-spec, descriptor.md). */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** A parsed manifest: an index (or manifest list) or an image manifest. */
export type Manifest =
  | { kind: "index"; mediaType: string; manifests: Descriptor[]; annotations: Record<string, string> }
  | { kind: "image"; mediaType: string; config: Descriptor; layers: Descriptor[]; annotations: Record<string, string> };

/** The roles a unikernel image's files play. */
export type Role = "kernel" | "initrd" | "kernel.dbg" | "rom";

/** One file of a unikernel image: a whole layer, or a file inside a tar layer. */
export interface ImageFile {
  role: Role;
  /** The output file name: `kernel`, `initrd`, `kernel.dbg`, `rom0`, `rom1`, … */
  name: string;
  layer: Descriptor;
  /** The file's path inside the tar layer, when it is not the whole layer. */
  path?: string;
}

/** Media types of an image index. */
export const INDEX_MEDIA_TYPES = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
/** Media types of an image manifest. */
export const IMAGE_MEDIA_TYPES = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
/** Uncompressed tar layers, whose files are contiguous byte ranges. */
export const TAR_MEDIA_TYPES = ["application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"];
/** kraftkit's standalone layers, and the unikraft spec's ROM layers. */
export const STANDALONE_MEDIA_TYPES: Record<string, Role> = {
  "application/vnd.unikraft.kernel.v1": "kernel",
  "application/vnd.unikraft.initrd.v1": "initrd",
  "application/vnd.unikraft.kernel.dbg.v1": "kernel.dbg",
  "application/vnd.unikraft.rom.v1": "rom",
};
/** Annotations that name a file inside a tar layer, by role. */
export const PATH_ANNOTATIONS: Record<string, Role> = {
  "org.unikraft.kernel.image": "kernel",
  "org.unikraft.kernel.initrd": "initrd",
  "org.unikraft.kernel.dbg": "kernel.dbg",
};
/** The most descriptors one manifest may list. */
export const MAX_DESCRIPTORS = 1024;

/**
 * Parse and check a manifest: its media type (the body's, else the
 * response's), every descriptor's digest and size, and the list lengths.
 *
 * @throws {IntegrityError} for malformed JSON, an unknown media type or a bad descriptor.
 * @example
 * ```ts
 * import { parseManifest } from "./manifest.ts";
 * const m = parseManifest(new TextEncoder().encode('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'), "", "example");
 * console.log(m.kind); // index
 * ```
 */
export function parseManifest(bytes: Uint8Array, headerMediaType: string, what: string): Manifest {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new IntegrityError(`Cannot parse manifest of "${what}": it is not valid JSON`, { cause });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new IntegrityError(`Cannot parse manifest of "${what}": it is not a JSON object`);
  }
  const mediaType = typeof json.mediaType === "string" ? json.mediaType : headerMediaType;
  const annotations = checkAnnotations(json.annotations, what);
  if (INDEX_MEDIA_TYPES.includes(mediaType) || (mediaType === "" && Array.isArray(json.manifests))) {
    return { kind: "index", mediaType, manifests: checkList(json.manifests, what), annotations };
  }
  if (IMAGE_MEDIA_TYPES.includes(mediaType) || (mediaType === "" && Array.isArray(json.layers))) {
    return { kind: "image", mediaType, config: checkDescriptor(json.config, what), layers: checkList(json.layers, what), annotations };
  }
  throw new IntegrityError(`Cannot use manifest of "${what}": unsupported media type "${String(mediaType).slice(0, 80)}"`);
}

/**
 * The files of a unikernel image, in a stable order: kernel, initrd,
 * kernel.dbg (only with `debugKernel`), then ROMs as `rom0`, `rom1`, ….
 *
 * @throws {IntegrityError} when an annotation names a file in a compressed layer.
 */
export function findImageFiles(manifest: Manifest & { kind: "image" }, debugKernel = false): ImageFile[] {
  const files: ImageFile[] = [];
  const tarLayers = manifest.layers.filter((l) => TAR_MEDIA_TYPES.includes(l.mediaType));
  for (const layer of manifest.layers) {
    const role = STANDALONE_MEDIA_TYPES[layer.mediaType];
    if (role !== undefined && role !== "rom") files.push({ role, name: role, layer });
    for (const [key, annotated] of Object.entries(PATH_ANNOTATIONS)) {
      const path = layer.annotations?.[key];
      if (path === undefined) continue;
      if (!TAR_MEDIA_TYPES.includes(layer.mediaType)) {
        throw new IntegrityError(`Cannot take "${path}" out of layer "${layer.digest}": media type "${layer.mediaType}" is not an uncompressed tar`);
      }
      files.push({ role: annotated, name: annotated, layer, path: normaliseTarPath(path) });
    }
  }
  for (const [key, role] of Object.entries(PATH_ANNOTATIONS)) {
    const path = manifest.annotations[key];
    const layer = tarLayers.at(-1);
    if (path !== undefined && layer !== undefined && !files.some((f) => f.role === role)) {
      files.push({ role, name: role, layer, path: normaliseTarPath(path) });
    }
  }
  const order: Role[] = ["kernel", "initrd", "kernel.dbg"];
  const unique = order.flatMap((role) => files.filter((f) => f.role === role).slice(0, 1));
  const roms = manifest.layers.filter((l) => STANDALONE_MEDIA_TYPES[l.mediaType] === "rom")
    .map((layer, i): ImageFile => ({ role: "rom", name: `rom${i}`, layer }));
  return [...unique.filter((f) => debugKernel || f.role !== "kernel.dbg"), ...roms];
}

/**
 * The files a pull asks for: every role, or only `roles` (`kernel.dbg` only
 * when asked for).
 *
 * @throws {NotFoundError} when the image has none of them.
 */
export function selectImageFiles(manifest: Manifest & { kind: "image" }, options: { debugKernel?: boolean; roles?: Role[] }, name: string): ImageFile[] {
  const files = findImageFiles(manifest, options.debugKernel || options.roles?.includes("kernel.dbg"))
    .filter((f) => options.roles === undefined || options.roles.includes(f.role));
  if (files.length === 0) {
    const what = options.roles?.join(", ") ?? "kernel, initrd or rom";
    throw new NotFoundError(`Cannot find a ${what} in "${name}": no layer is a unikraft ${what} (see the README's image formats)`);
  }
  return files;
}

/** A tar member's name as stored: no leading `/` or `./`. */
export function normaliseTarPath(path: string): string {
  return path.replace(/^(\.?\/)+/, "");
}

function checkList(value: unknown, what: string): Descriptor[] {
  if (!Array.isArray(value)) throw new IntegrityError(`Cannot parse manifest of "${what}": a descriptor list is missing`);
  if (value.length > MAX_DESCRIPTORS) {
    throw new IntegrityError(`Cannot use manifest of "${what}": it lists ${value.length} descriptors, more than the limit of ${MAX_DESCRIPTORS}`);
  }
  return value.map((d) => checkDescriptor(d, what));
}

function checkDescriptor(value: unknown, what: string): Descriptor {
  const d = value as Record<string, unknown>;
  if (typeof d !== "object" || d === null) throw new IntegrityError(`Cannot parse manifest of "${what}": a descriptor is not an object`);
  if (!isDigest(d.digest)) {
    throw new IntegrityError(`Cannot use manifest of "${what}": descriptor digest "${String(d.digest).slice(0, 80)}" is not sha256:<64 hex>`);
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0 || d.size > MAX_BLOB_BYTES) {
    throw new IntegrityError(`Cannot use manifest of "${what}": descriptor "${d.digest}" has a bad size "${String(d.size).slice(0, 40)}"`);
  }
  if (typeof d.mediaType !== "string" || d.mediaType.length > 255) {
    throw new IntegrityError(`Cannot use manifest of "${what}": descriptor "${d.digest}" has no media type`);
  }
  const platform = d.platform as Descriptor["platform"];
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    ...(d.annotations !== undefined && { annotations: checkAnnotations(d.annotations, what) }),
    ...(typeof platform === "object" && platform !== null && { platform: pickStrings(platform, ["os", "architecture", "variant"]) }),
  };
}

function checkAnnotations(value: unknown, what: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new IntegrityError(`Cannot parse manifest of "${what}": annotations are not an object`);
  }
  return pickStrings(value as Record<string, unknown>, Object.keys(value));
}

function pickStrings<T extends Record<string, unknown>>(value: T, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of keys) if (typeof value[key] === "string") out[key] = value[key] as string;
  return out;
}
