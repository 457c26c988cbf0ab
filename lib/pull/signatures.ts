/**
 * The signature policy, checked before any file of an image is handed out
 * (`--policy`, containers-policy.json(5); `lib/oci/policy.ts`). A
 * `sigstoreSigned` requirement is met by cosign's "simple signing" form: the
 * tag `sha256-<hex>.sig` in the image's repository names an image manifest
 * whose layers are payloads (`application/vnd.dev.cosign.simplesigning.v1+json`)
 * naming the image's digest and identity, each signed in its annotation
 * `dev.cosignproject.cosign/signature` (base64 of the signature over the
 * payload: ECDSA in DER, RSA, or Ed25519, as the key says). One payload that
 * names this digest and an identity the policy accepts, signed by one of the
 * policy's keys, is enough; anything else is refused (exit 7) with its reason.
 *
 * @module
 */

import { createPublicKey, type KeyObject, verify } from "node:crypto";
import { NotFoundError, PolicyError, UsageError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { digestOf, isDigest } from "../oci/digest.ts";
import { MAX_MANIFEST_BYTES, MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import { signatureTag } from "../oci/names.ts";
import { type Policy, type Requirement, requirementsFor, type SignedIdentity } from "../oci/policy.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import { parseSignatures } from "../store/index-file.ts";
import { fetchBlob } from "./blobs.ts";
import type { BlobResult, Cache, Resolved } from "./cache.ts";

/** The media type of a cosign simple-signing payload, and the annotation with its signature. */
const PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
/** Bounds on what a registry may make us read for one image's signatures. */
const MAX_SIGNATURES = 16;
const MAX_PAYLOAD_BYTES = 64 * 1024;

/**
 * Check `policy` for `ref` (as the user asked for it), resolved as `resolved`. The signatures that met it before,
 * kept with the image (`io.ocicache.signatures` on its entry, their manifests and payloads in `blobs/`), are checked
 * first, from the cache alone: offline, and for a warm hit, no request is made. Returns the digests of the signature
 * manifests that met it, to keep with the image.
 *
 * @throws {PolicyError} when the policy refuses the image, with the reason.
 * @throws {UsageError} when a key of the policy cannot be read.
 */
export async function checkPolicy(cache: Cache, ref: Reference, resolved: Resolved, policy: Policy): Promise<Digest[]> {
  const name = formatReference(ref);
  const met = new Set<Digest>();
  for (const requirement of requirementsFor(policy, ref)) {
    if (requirement.type === "insecureAcceptAnything") continue;
    if (requirement.type === "reject") throw new PolicyError(`Cannot accept "${name}": the policy rejects it`);
    met.add(await checkSigned(cache, ref, resolved, requirement));
  }
  return [...met];
}

type Want = { ref: Reference; digest: Digest; keys: KeyObject[]; identity: SignedIdentity };

async function checkSigned(
  cache: Cache,
  ref: Reference,
  resolved: Resolved,
  requirement: Extract<Requirement, { type: "sigstoreSigned" }>,
): Promise<Digest> {
  const name = formatReference(ref);
  const want: Want = {
    ref,
    digest: resolved.digest,
    keys: requirement.keys.map(loadKey),
    identity: requirement.signedIdentity,
  };
  const tag = signatureTag(resolved.digest);
  const repo = { ...ref, tag, digest: undefined };
  const reasons: string[] = [];
  for (const digest of keptSignatures(resolved)) {
    const bytes = cache.store.readBytes(digest, MAX_MANIFEST_BYTES);
    if (bytes === undefined || digestOf(bytes) !== digest) continue;
    const reason = await checkManifest(cache, repo, bytes, want);
    if (reason === undefined) return digest;
    reasons.push(reason);
  }
  if (cache.options.offline) {
    const why = reasons.length > 0 ? reasons.join("; ") : "no signature of it is cached";
    throw new PolicyError(`Cannot accept "${name}" offline: ${why}`);
  }
  let fetched: { digest: Digest; bytes: Uint8Array };
  try {
    fetched = await (await cache.client()).getManifest(repo, tag);
  } catch (error) {
    if (error instanceof NotFoundError) throw new PolicyError(`Cannot accept "${name}": it has no signature (${tag})`);
    throw error;
  }
  const reason = await checkManifest(cache, repo, fetched.bytes, want);
  if (reason !== undefined) throw new PolicyError(`Cannot accept "${name}": ${reason}`);
  if (cache.writable) cache.store.putBytes({ digest: fetched.digest, size: fetched.bytes.byteLength }, fetched.bytes);
  return fetched.digest;
}

/** The signature manifests kept with the image's entry (only for the digest it names). */
function keptSignatures(resolved: Resolved): Digest[] {
  return resolved.entry?.digest === resolved.digest ? parseSignatures(resolved.entry) : [];
}

/** Why a signature manifest does not vouch for the image, or `undefined` when one of its payloads does. */
async function checkManifest(
  cache: Cache,
  repo: Reference,
  bytes: Uint8Array,
  want: Want,
): Promise<string | undefined> {
  let manifest: { layers?: unknown };
  try {
    manifest = JSON.parse(new TextDecoder().decode(bytes)) as { layers?: unknown };
  } catch {
    return "its signature manifest is not JSON";
  }
  const layers = Array.isArray(manifest.layers) ? manifest.layers : [];
  if (layers.length === 0 || layers.length > MAX_SIGNATURES)
    return `its signature manifest has ${layers.length} payloads`;
  const reasons: string[] = [];
  for (const layer of layers) {
    const reason = await checkPayload(cache, repo, layer, want);
    if (reason === undefined) return undefined;
    reasons.push(reason);
  }
  return [...new Set(reasons)].join("; ");
}

/** One payload of a signature manifest, read from the cache (fetched into it when missing), with what it claims. */
interface Payload {
  digest: Digest;
  bytes: Buffer;
  /** The annotation's signature, when there is one. */
  signature?: string;
  /** Whether it is JSON; the image digest and name it claims, when it names them. */
  json: boolean;
  signedDigest?: string;
  identity?: string;
}

/** A layer of a signature manifest as a payload, or why it is not one: bounded, verified by its digest. */
async function readPayload(cache: Cache, repo: Reference, layer: unknown): Promise<Payload | string> {
  const descriptor = layer as { mediaType?: unknown; digest?: unknown; size?: unknown; annotations?: unknown };
  if (descriptor.mediaType !== PAYLOAD_TYPE || !isDigest(descriptor.digest)) return "a payload is not a signature";
  if (!Number.isSafeInteger(descriptor.size) || (descriptor.size as number) > MAX_PAYLOAD_BYTES)
    return "a payload is over 64 KiB";
  let blob: BlobResult;
  try {
    blob = await fetchBlob(cache, repo, {
      mediaType: PAYLOAD_TYPE,
      digest: descriptor.digest,
      size: descriptor.size as number,
    });
  } catch (error) {
    // Offline, a payload removed from the cache: the image is refused, not "not found".
    if (error instanceof NotFoundError) return "a payload is not cached";
    throw error;
  }
  if (blob.path === undefined) return "a payload could not be kept";
  const bytes = readFileBounded(blob.path, MAX_PAYLOAD_BYTES);
  const signature = ((descriptor.annotations ?? {}) as Record<string, unknown>)[SIGNATURE_ANNOTATION];
  const payload: Payload = {
    digest: descriptor.digest,
    bytes,
    json: false,
    ...(typeof signature === "string" && { signature }),
  };
  try {
    const claims = JSON.parse(bytes.toString("utf8")) as {
      critical?: { image?: Record<string, unknown>; identity?: Record<string, unknown> };
    };
    const signedDigest = claims.critical?.image?.["docker-manifest-digest"];
    const identity = claims.critical?.identity?.["docker-reference"];
    payload.json = true;
    if (typeof signedDigest === "string") payload.signedDigest = signedDigest;
    if (typeof identity === "string") payload.identity = identity;
  } catch {
    // Not JSON: it claims nothing.
  }
  return payload;
}

/** Why one payload does not vouch for the image, or `undefined` when it does. */
async function checkPayload(cache: Cache, repo: Reference, layer: unknown, want: Want): Promise<string | undefined> {
  const payload = await readPayload(cache, repo, layer);
  if (typeof payload === "string") return payload;
  if (payload.signature === undefined) return "a payload has no signature";
  const signed = Buffer.from(payload.signature, "base64");
  if (!want.keys.some((key) => verifies(key, payload.bytes, signed))) return "no signature by a key of the policy";
  if (!payload.json) return "a signed payload is not JSON";
  if (payload.signedDigest !== want.digest) return "a signature is for another digest";
  const identity = payload.identity;
  if (identity === undefined || !identityMatches(identity, want.ref, want.identity))
    return (
      `a signature names "${String(identity).slice(0, 200)}", ` +
      `which the policy's ${want.identity.type} does not accept`
    );
  return undefined;
}

function verifies(key: KeyObject, payload: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(key.asymmetricKeyType === "ed25519" ? null : "sha256", payload, key, signature);
  } catch {
    return false;
  }
}

/** Whether a signature's `docker-reference` is one the identity rule accepts for the image asked for as `ref`. */
export function identityMatches(signed: string, ref: Reference, rule: SignedIdentity): boolean {
  let named: Reference;
  try {
    named = parseReference(signed);
  } catch {
    return false;
  }
  const repository = (r: Reference) => `${r.registry}/${r.repository}`;
  const hasTagOrDigest = /@|:[^/]*$/.test(signed);
  switch (rule.type) {
    case "matchRepoDigestOrExact":
      // Asked for by digest: the repository must match; by tag: the signature must name that very tag.
      if (ref.digest !== undefined) return repository(named) === repository(ref);
      return hasTagOrDigest && named.digest === undefined && formatReference(named) === formatReference(ref);
    case "matchRepository":
      return repository(named) === repository(ref);
    case "exactRepository":
      return repository(named) === repository(parseReference(rule.dockerRepository));
    case "exactReference":
      return hasTagOrDigest && formatReference(named) === formatReference(parseReference(rule.dockerReference));
  }
}

function loadKey(key: { path?: string; data?: string }): KeyObject {
  let pem: string;
  if (key.path !== undefined) {
    try {
      pem = readFileBounded(key.path, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8");
    } catch (error) {
      throw new UsageError(`Cannot read the policy's key "${key.path}": ${describeReadError(error)}`);
    }
  } else pem = Buffer.from(key.data!, "base64").toString("utf8");
  try {
    return createPublicKey(pem);
  } catch {
    throw new UsageError(`Cannot use the policy's key ${key.path ?? "(keyData)"}: it is not a PEM public key`);
  }
}

/** An image's cosign signatures, as `inspect` shows them: the signature manifest, what each payload claims. */
export interface InspectedSignatures {
  /** The tag they are found under: `sha256-<hex>.sig`. */
  tag: string;
  /** The signature manifest's digest. */
  manifest: Digest;
  /** Each payload: its digest, and the image digest and name it claims (not verified here). */
  payloads: Array<{ digest: Digest; signedDigest?: string; identity?: string }>;
  /** With a policy: whether it accepts the image, and if not, why. */
  accepted?: boolean;
  reason?: string;
}

/**
 * The image's simple-signing signatures, for `inspect`: the manifest kept with the image, else the registry's (none
 * when it has none), each payload's claims, and with `policy` whether it accepts the image (the same check as a pull).
 */
export async function listSignatures(
  cache: Cache,
  ref: Reference,
  resolved: Resolved,
  policy: Policy | undefined,
): Promise<InspectedSignatures[]> {
  const tag = signatureTag(resolved.digest);
  const repo = { ...ref, tag, digest: undefined };
  let found: { digest: Digest; bytes: Uint8Array } | undefined;
  for (const digest of keptSignatures(resolved)) {
    const bytes = cache.store.readBytes(digest, MAX_MANIFEST_BYTES);
    if (bytes !== undefined && digestOf(bytes) === digest) found ??= { digest, bytes };
  }
  if (found === undefined && !cache.options.offline) {
    try {
      found = await (await cache.client()).getManifest(repo, tag);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
  }
  if (found === undefined) return [];
  let layers: unknown;
  try {
    layers = (JSON.parse(new TextDecoder().decode(found.bytes)) as { layers?: unknown }).layers;
  } catch {
    layers = [];
  }
  const payloads = await Promise.all(
    (Array.isArray(layers) ? layers.slice(0, MAX_SIGNATURES) : []).map((layer) => claims(cache, repo, layer)),
  );
  const entry: InspectedSignatures = { tag, manifest: found.digest, payloads: payloads.flatMap((p) => p ?? []) };
  if (policy === undefined) return [entry];
  try {
    await checkPolicy(cache, ref, resolved, policy);
    return [{ ...entry, accepted: true }];
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    return [{ ...entry, accepted: false, reason: error.message }];
  }
}

/** What one payload claims (not verified); `undefined` for a layer that is not a payload it can read. */
async function claims(
  cache: Cache,
  repo: Reference,
  layer: unknown,
): Promise<InspectedSignatures["payloads"][0] | undefined> {
  const payload = await readPayload(cache, repo, layer);
  if (typeof payload === "string") return undefined;
  return {
    digest: payload.digest,
    ...(payload.signedDigest !== undefined && { signedDigest: payload.signedDigest.slice(0, 200) }),
    ...(payload.identity !== undefined && { identity: payload.identity.slice(0, 200) }),
  };
}
