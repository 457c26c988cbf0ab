/**
 * One walk from a reference to a unikernel's files, for every source: the
 * manifest it names, the platform's manifest when that is an index, then the
 * files the caller asks for. One resolve, one set of error messages.
 *
 * @module
 */

import { IntegrityError, NotFoundError } from "../errors.ts";
import { type ImageFile, selectImageFiles } from "../oci/files.ts";
import { type Descriptor, type Manifest, parseManifest } from "../oci/manifest.ts";
import type { Role } from "../oci/names.ts";
import { describe, formatPlatform, type PlatformWant, selectManifest } from "../oci/platform.ts";
import type { ImageSource, SourceManifest } from "./source.ts";

/** What to choose from an image. */
export interface ImageChoice {
  /** The platform to choose from an index. @default the host's architecture */
  platform?: PlatformWant;
  /** Include `kernel.dbg`. @default false */
  debugKernel?: boolean;
  /** Only these roles. @default every role */
  roles?: Role[];
}

/** An image resolved down to its files. */
export interface ResolvedImage {
  /** The manifest the reference names (an index or an image manifest). */
  top: SourceManifest & { manifest: Manifest };
  /** The platform's image manifest. */
  image: SourceManifest & { manifest: Manifest & { kind: "image" } };
  /** The chosen platform, when the top manifest is an index. */
  platform?: PlatformWant;
  files: ImageFile[];
}

/**
 * Resolve an image from a source down to the files asked for.
 *
 * @throws {NotFoundError} when the platform or a role is not there.
 * @throws {IntegrityError} when a manifest is malformed, or an index names an index.
 * @example An image manifest resolved to its kernel (a source of the example's own)
 * ```ts
 * import assert from "node:assert";
 * import { writeFileSync } from "node:fs";
 * import { resolveImage } from "./image.ts";
 * import { digestOf } from "../oci/digest.ts";
 * import type { ImageSource } from "./source.ts";
 * const kernel = { mediaType: "application/vnd.unikraft.kernel.v1", digest: digestOf("a unikernel"), size: 11 };
 * const config = { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf("{}"), size: 2 };
 * const mediaType = "application/vnd.oci.image.manifest.v1+json";
 * const bytes = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType, config, layers: [kernel] }));
 * writeFileSync("kernel.blob", "a unikernel");
 * const source: ImageSource = {
 *   name: "example",
 *   verify: false,
 *   top: async () => ({ digest: digestOf(bytes), bytes, mediaType, hit: true }),
 *   manifest: async () => Promise.reject(new Error("an image manifest names no other")),
 *   blob: async () => ({ path: "kernel.blob", hit: true, cached: false }),
 *   announce: () => {},
 *   fallbackFor: () => undefined,
 *   tees: () => new Map(),
 *   linkable: () => true,
 *   members: () => ({ trustRecorded: false, keep: false, record: false }),
 * };
 * const image = await resolveImage(source, { roles: ["kernel"] });
 * assert.equal(image.files[0]!.layer.digest, kernel.digest);
 * ```
 */
export async function resolveImage(source: ImageSource, choice: ImageChoice = {}): Promise<ResolvedImage> {
  const top = await resolveTop(source);
  if (top.manifest.kind !== "index") return resolveChild(source, top, undefined, choice);
  const chosen = selectManifest(top.manifest.manifests, choice.platform ?? {}, source.name);
  return resolveChild(source, top, chosen, choice);
}

/**
 * Resolve every platform of an index (or the one image a manifest is) down to its files. A platform without a
 * unikernel file (an attestation manifest, say) is left out.
 *
 * @throws {NotFoundError} when no platform has the files asked for.
 * @throws {IntegrityError} when a manifest is malformed, or an index names an index.
 */
export async function resolveAllPlatforms(source: ImageSource, choice: ImageChoice = {}): Promise<ResolvedImage[]> {
  const top = await resolveTop(source);
  if (top.manifest.kind !== "index") return [await resolveChild(source, top, undefined, choice)];
  const images: ResolvedImage[] = [];
  for (const child of top.manifest.manifests) {
    try {
      images.push(await resolveChild(source, top, child, choice));
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
  }
  if (images.length === 0) throw new NotFoundError(`Cannot find a platform with unikernel files in "${source.name}"`);
  return images;
}

async function resolveTop(source: ImageSource): Promise<ResolvedImage["top"]> {
  const fetched = await source.top();
  return { ...fetched, manifest: parseManifest(fetched.bytes, fetched.mediaType, source.name) };
}

/** The image `chosen` names among its index's manifests (or, without one, the top manifest), down to its files. */
async function resolveChild(
  source: ImageSource,
  top: ResolvedImage["top"],
  chosen: Descriptor | undefined,
  choice: ImageChoice,
): Promise<ResolvedImage> {
  let image = top;
  let platform: PlatformWant | undefined;
  if (chosen !== undefined) {
    platform = describe(chosen);
    const child = await source.manifest(chosen);
    const name = `${source.name} (${formatPlatform(platform)})`;
    image = { ...child, manifest: parseManifest(child.bytes, chosen.mediaType, name) };
  }
  const manifest = image.manifest;
  if (manifest.kind !== "image")
    throw new IntegrityError(`Cannot use "${source.name}": an index inside an index is not a unikernel image`);
  const files = selectImageFiles(manifest, choice, source.name);
  return { top, image: { ...image, manifest }, ...(platform !== undefined && { platform }), files };
}
