/**
 * Manifests as untrusted input: an index (or Docker manifest list) or an
 * image manifest, every descriptor's digest, size and media type checked,
 * lists and annotations bounded.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import { type Digest, isDigest } from "./digest.ts";
import { MAX_BLOB_BYTES } from "./limits.ts";
import { IMAGE_MEDIA_TYPES, INDEX_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST } from "./names.ts";

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

/** The media type of a manifest that names none: OCI's index or image manifest. */
export function defaultMediaType(manifest: Manifest): string {
  return manifest.mediaType || (manifest.kind === "index" ? OCI_INDEX : OCI_MANIFEST);
}

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
 * const json = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] };
 * const m = parseManifest(new TextEncoder().encode(JSON.stringify(json)), "", "example");
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
    return {
      kind: "image",
      mediaType,
      config: checkDescriptor(json.config, what),
      layers: checkList(json.layers, what),
      annotations,
    };
  }
  throw new IntegrityError(
    `Cannot use manifest of "${what}": unsupported media type "${String(mediaType).slice(0, 80)}"`,
  );
}

function checkList(value: unknown, what: string): Descriptor[] {
  if (!Array.isArray(value))
    throw new IntegrityError(`Cannot parse manifest of "${what}": a descriptor list is missing`);
  if (value.length > MAX_DESCRIPTORS) {
    throw new IntegrityError(
      `Cannot use manifest of "${what}": it lists ${value.length} descriptors, more than the limit of ` +
        `${MAX_DESCRIPTORS}`,
    );
  }
  return value.map((d) => checkDescriptor(d, what));
}

function checkDescriptor(value: unknown, what: string): Descriptor {
  const d = value as Record<string, unknown>;
  if (typeof d !== "object" || d === null)
    throw new IntegrityError(`Cannot parse manifest of "${what}": a descriptor is not an object`);
  if (!isDigest(d.digest)) {
    throw new IntegrityError(
      `Cannot use manifest of "${what}": descriptor digest "${String(d.digest).slice(0, 80)}" is not sha256:<64 hex>`,
    );
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0 || d.size > MAX_BLOB_BYTES) {
    throw new IntegrityError(
      `Cannot use manifest of "${what}": descriptor "${d.digest}" has a bad size "${String(d.size).slice(0, 40)}"`,
    );
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
    ...(typeof platform === "object" &&
      platform !== null && { platform: pickStrings(platform, ["os", "architecture", "variant"]) }),
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
