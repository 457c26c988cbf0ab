/**
 * Sigstore bundles attached to an image as OCI 1.1 referrers, the form cosign 3 and GitHub's build attestations
 * write: a manifest whose `subject` is the image and whose one layer is a bundle, a DSSE envelope over an in-toto
 * statement naming the image's digest. Found through the referrers API, or the referrers tag schema
 * (`sha256-<hex>`) on a registry without it. Only key-based bundles are verified, with the sigstore project's own
 * `@sigstore/bundle` and `@sigstore/verify`, loaded when a bundle is first checked; a transparency-log entry or a
 * timestamp a bundle carries is not checked, and a bundle signed by a certificate (keyless) is refused.
 *
 * @module
 */

import type { KeyObject } from "node:crypto";
import type { Digest } from "../oci/digest.ts";
import { isDigest } from "../oci/digest.ts";
import { isObject, parseObject } from "../oci/json.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { readFileBounded } from "../oci/read.ts";
import type { Reference } from "../oci/reference.ts";
import type { Cache } from "./cache.ts";

/** The media types of a Sigstore bundle, as an artifact type or a layer's. */
const BUNDLE_MEDIA_TYPES = new Set([
  "application/vnd.dev.sigstore.bundle.v0.3+json",
  "application/vnd.dev.sigstore.bundle+json;version=0.3",
  "application/vnd.dev.sigstore.bundle+json;version=0.2",
]);
const IN_TOTO = "application/vnd.in-toto+json";
const STATEMENT_TYPES = new Set(["https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"]);
/** Bounds on what a registry may make us read for one image's bundles. */
const MAX_BUNDLES = 16;
const MAX_BUNDLE_BYTES = 256 * 1024;

/**
 * The manifests of one image's bundle referrers as the registry lists them now (none when it lists none, or sends no
 * list it can read); at most `MAX_BUNDLES`.
 */
export async function listBundleReferrers(cache: Cache, repo: Reference, digest: Digest): Promise<Digest[]> {
  const bytes = await (await cache.client()).getReferrers(repo, digest);
  const index = bytes === undefined ? undefined : parseObject(bytes);
  const referrers: Digest[] = [];
  for (const item of Array.isArray(index?.manifests) ? index.manifests : []) {
    if (!isObject(item) || !isDigest(item.digest) || !BUNDLE_MEDIA_TYPES.has(String(item.artifactType))) continue;
    referrers.push(item.digest);
    if (referrers.length === MAX_BUNDLES) break;
  }
  return referrers;
}

/** Whether a manifest's bytes are a bundle referrer's (else they may be a simple-signing manifest). */
export function isBundleManifest(manifest: unknown): boolean {
  const layers = (manifest as { layers?: unknown }).layers;
  return Array.isArray(layers) && BUNDLE_MEDIA_TYPES.has(String((layers[0] as { mediaType?: unknown })?.mediaType));
}

/** A bundle read from its referrer manifest: what its statement claims, not yet verified. */
export interface ReadBundle {
  /** The bundle's own digest (the manifest's layer). */
  digest: Digest;
  /** The bundle as JSON, for `@sigstore/bundle`. */
  json: unknown;
  predicateType: string;
  /** The statement's subjects: each one's name, when it has one, and SHA-256 digest. */
  subjects: Array<{ name?: string; digest?: Digest }>;
}

/**
 * A referrer manifest's bundle, bounded, with what its statement claims; or why it is not a key-signed statement
 * about `image`. `blob` gives the bundle's path (from the cache, fetched into it when missing), or why it cannot be
 * had.
 */
export async function readBundle(
  manifest: unknown,
  image: Digest,
  blob: (descriptor: Descriptor) => Promise<string | { path: string }>,
): Promise<ReadBundle | string> {
  const { subject, layers } = manifest as { subject?: { digest?: unknown }; layers?: unknown[] };
  if (subject?.digest !== image) return "a bundle is attached to another image";
  const layer = (layers?.length === 1 ? layers[0] : {}) as { mediaType?: unknown; digest?: unknown; size?: unknown };
  if (!isDigest(layer.digest) || !BUNDLE_MEDIA_TYPES.has(String(layer.mediaType)))
    return "a bundle manifest does not hold one bundle";
  if (!Number.isSafeInteger(layer.size) || (layer.size as number) > MAX_BUNDLE_BYTES) return "a bundle is over 256 KiB";
  const kept = await blob({ mediaType: String(layer.mediaType), digest: layer.digest, size: layer.size as number });
  if (typeof kept === "string") return kept;
  return parseBundle(readFileBounded(kept.path, MAX_BUNDLE_BYTES), layer.digest);
}

function parseBundle(bytes: Buffer, digest: Digest): ReadBundle | string {
  const json = parseObject(bytes) as
    | { verificationMaterial?: { publicKey?: unknown }; dsseEnvelope?: { payloadType?: unknown; payload?: unknown } }
    | undefined;
  if (json === undefined) return "a bundle is not a JSON object";
  const envelope = json.dsseEnvelope;
  if (!isObject(envelope)) return "a bundle signs a message, not a statement about the image";
  if (!isObject(json.verificationMaterial) || json.verificationMaterial.publicKey === undefined)
    return "a bundle is signed by a certificate (keyless), which ocicache does not verify";
  if (envelope.payloadType !== IN_TOTO || typeof envelope.payload !== "string")
    return "a bundle's envelope is not an in-toto statement";
  const statement = parseObject(Buffer.from(envelope.payload, "base64"));
  if (statement === undefined) return "a bundle's statement is not a JSON object";
  if (!STATEMENT_TYPES.has(String(statement._type)) || !Array.isArray(statement.subject))
    return "a bundle's statement is not an in-toto statement";
  const subjects = statement.subject.slice(0, MAX_BUNDLES).map((item) => {
    const { name, digest: digests } = (isObject(item) ? item : {}) as { name?: unknown; digest?: { sha256?: unknown } };
    const sha256 = `sha256:${String(digests?.sha256)}`;
    return {
      ...(typeof name === "string" && { name: name.slice(0, 400) }),
      ...(isDigest(sha256) && { digest: sha256 }),
    };
  });
  return { digest, json, predicateType: String(statement.predicateType ?? "").slice(0, 200), subjects };
}

/**
 * Whether one of `keys` signed the bundle: its envelope verified by `@sigstore/verify`, with the key as the trust
 * material and no transparency-log entry or timestamp required (those it carries are not checked). A bundle
 * `@sigstore/bundle` does not accept is a reason.
 */
export async function bundleSignedBy(bundle: ReadBundle, keys: KeyObject[]): Promise<boolean | string> {
  const [{ bundleFromJSON }, { Verifier, toSignedEntity }] = await Promise.all([
    import("@sigstore/bundle"),
    import("@sigstore/verify"),
  ]);
  let entity: ReturnType<typeof toSignedEntity>;
  try {
    entity = { ...toSignedEntity(bundleFromJSON(bundle.json)), tlogEntries: [], timestamps: [] };
  } catch (error) {
    return `a bundle is malformed (${String((error as Error).message).slice(0, 200)})`;
  }
  return keys.some((key) => {
    const trust = {
      certificateAuthorities: [],
      timestampAuthorities: [],
      tlogs: [],
      ctlogs: [],
      publicKey: () => ({ publicKey: key, validFor: () => true }),
    };
    try {
      new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(entity);
      return true;
    } catch {
      return false;
    }
  });
}
