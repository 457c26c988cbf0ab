/**
 * The names the OCI specs and unikraft give things: media types of
 * manifests and layers, and the annotation keys ocicache reads and writes.
 * Every other module takes them from here.
 *
 * @module
 */

/** The OCI image index (image-spec, image-index.md). */
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
/** The OCI image manifest (image-spec, manifest.md). */
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** Docker's manifest list, an index by another name. */
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
/** Docker's image manifest (schema 2). */
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";

/** Media types of an image index. */
export const INDEX_MEDIA_TYPES = [OCI_INDEX, DOCKER_MANIFEST_LIST];
/** Media types of an image manifest. */
export const IMAGE_MEDIA_TYPES = [OCI_MANIFEST, DOCKER_MANIFEST];
/** Every manifest media type ocicache asks registries for (`Accept`) and accepts. */
export const MANIFEST_MEDIA_TYPES = [...INDEX_MEDIA_TYPES, ...IMAGE_MEDIA_TYPES];
/** Uncompressed tar layers, whose files are contiguous byte ranges. */
export const TAR_MEDIA_TYPES = [
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.docker.image.rootfs.diff.tar",
];

/** Compressed tar layers (an image pushed again by common tools, or recompressed by a mirror), by compression. */
export const COMPRESSED_TAR_MEDIA_TYPES: Record<string, "gzip" | "zstd"> = {
  "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
};

/** The roles a unikernel image's files play. */
export type Role = "kernel" | "initrd" | "kernel.dbg" | "rom";

/** kraftkit's standalone layers, and the unikraft spec's ROM layers, by the role of their file. */
export const STANDALONE_MEDIA_TYPES: Record<string, Role> = {
  "application/vnd.unikraft.kernel.v1": "kernel",
  "application/vnd.unikraft.initrd.v1": "initrd",
  "application/vnd.unikraft.kernel.dbg.v1": "kernel.dbg",
  "application/vnd.unikraft.rom.v1": "rom",
};

/** Annotations (on a tar layer, or on the manifest for its last tar layer) that name a file inside it, by role. */
export const PATH_ANNOTATIONS: Record<string, Role> = {
  "org.unikraft.kernel.image": "kernel",
  "org.unikraft.kernel.initrd": "initrd",
  "org.unikraft.kernel.dbg": "kernel.dbg",
};
/** Where the unikraft image spec puts each file in the root filesystem: looked for when no annotation names them. */
export const WELL_KNOWN_PATHS: Record<string, Role> = {
  "unikraft/bin/kernel": "kernel",
  "unikraft/bin/initrd": "initrd",
  "unikraft/bin/kernel.dbg": "kernel.dbg",
};
/** Unikraft's architecture annotation on an index's manifest descriptor. */
export const ARCH_ANNOTATION = "org.unikraft.kernel.arch";
/** Unikraft's platform annotation on an index's manifest descriptor. */
export const PLAT_ANNOTATION = "org.unikraft.kernel.plat";

/** The annotation that names a reference in an OCI image layout (`index.json`). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
/** When the registry last confirmed a tag's digest (ISO 8601). */
export const CHECKED_ANNOTATION = "io.ocicache.checked";
/** Files taken out of tar layers: JSON `{"<layer digest>:<path>": {digest, size}}`. */
export const DERIVED_ANNOTATION = "io.ocicache.derived";
/** The tag cosign keeps an image's signatures under, in its repository: `sha256-<hex>.sig`. */
export function signatureTag(digest: string): string {
  return `sha256-${digest.slice("sha256:".length)}.sig`;
}

/**
 * The referrers tag schema's tag for `digest` (distribution spec v1.1): an image index listing the manifests whose
 * `subject` is that digest, for a registry without the referrers API.
 */
export function referrersTag(digest: string): string {
  return `sha256-${digest.slice("sha256:".length)}`;
}

/** On a cached reference's entry: the digests of the signature manifests that met the policy (a JSON list). */
export const SIGNATURES_ANNOTATION = "io.ocicache.signatures";
