/**
 * One walk from a reference to a unikernel's files, for every source: the
 * manifest it names, the platform's manifest when that is an index, then the
 * files the caller asks for. One resolve, one set of error messages.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import { selectImageFiles, type ImageFile } from "../oci/files.ts";
import { parseManifest, type Manifest } from "../oci/manifest.ts";
import type { Role } from "../oci/names.ts";
import { describe, formatPlatform, selectManifest, type PlatformWant } from "../oci/platform.ts";
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
 * @example
 * ```ts
 * import { resolveImage } from "./image.ts";
 * import { layoutSource } from "./layout-source.ts";
 * const source = layoutSource({ dir: "./image" }, false);
 * const image = await resolveImage(source, { roles: ["kernel"] }).catch(() => undefined);
 * ```
 */
export async function resolveImage(source: ImageSource, choice: ImageChoice = {}): Promise<ResolvedImage> {
  const fetched = await source.top();
  const top = { ...fetched, manifest: parseManifest(fetched.bytes, fetched.mediaType, source.name) };
  let image = top;
  let platform: PlatformWant | undefined;
  if (top.manifest.kind === "index") {
    const chosen = selectManifest(top.manifest.manifests, choice.platform ?? {}, source.name);
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
