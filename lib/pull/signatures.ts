/**
 * The signature policy, checked before any file of an image is handed out
 * (`--policy`, containers-policy.json(5); `lib/oci/policy.ts`). A
 * `sigstoreSigned` requirement is met by one signature, in either form found
 * on registries: cosign's "simple signing" (the tag `sha256-<hex>.sig` in the
 * image's repository names an image manifest whose layers are payloads,
 * `application/vnd.dev.cosign.simplesigning.v1+json`, naming the image's
 * digest and identity, each signed in its annotation
 * `dev.cosignproject.cosign/signature`: ECDSA in DER, RSA, or Ed25519, as the
 * key says), or a Sigstore bundle among the image's referrers (`bundles.ts`).
 * It must be signed by one of the policy's keys and name this digest and an
 * identity the policy accepts; anything else is refused (exit 7) with its
 * reason. The signatures that met it are kept with the image and checked
 * again from the cache.
 *
 * @module
 */

import { createPublicKey, type KeyObject, verify } from "node:crypto";
import { IntegrityError, NotFoundError, PolicyError, UsageError } from "../errors.ts";
import type { Digest } from "../oci/digest.ts";
import { digestOf, isDigest } from "../oci/digest.ts";
import { parseObject } from "../oci/json.ts";
import { MAX_MANIFEST_BYTES, MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { referrersTag, signatureTag } from "../oci/names.ts";
import { type Policy, type Requirement, requirementsFor, type SignedIdentity } from "../oci/policy.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import { parseSignatures } from "../store/index-file.ts";
import { bundleSignedBy, isBundleManifest, listBundleReferrers, readBundle } from "./bundles.ts";
import type { Cache, Resolved } from "./cache.ts";

/** The media type of a cosign simple-signing payload, and the annotation with its signature. */
const PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
/** Bounds on what a registry may make us read for one image's signatures. */
const MAX_SIGNATURES = 16;
const MAX_PAYLOAD_BYTES = 64 * 1024;

/**
 * Check `policy` for `ref` (as the user asked for it), resolved as `resolved`. The signatures that met it before,
 * kept with the image (`io.ocicache.signatures` on its entry, their manifests and payloads or bundles in `blobs/`),
 * are checked first, from the cache alone: offline, and for a warm hit, no request is made; with `--verify`, the
 * registry is asked again. Returns the digests of the signature manifests that met it, to keep with the image.
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
  const repo = repositoryOf(ref, resolved.digest);
  const reasons: string[] = [];
  const askAgain = cache.options.verify === true && !cache.options.offline;
  for (const kept of askAgain ? [] : keptSignatures(cache, resolved)) {
    const reason = await checkSignature(cache, repo, kept.bytes, want);
    if (reason === undefined) return kept.digest;
    reasons.push(reason);
  }
  if (cache.options.offline) {
    const why = reasons.length > 0 ? reasons.join("; ") : "no signature of it is cached";
    throw new PolicyError(`Cannot accept "${name}" offline: ${why}`);
  }
  reasons.length = 0;
  for await (const fetched of registrySignatures(cache, repo, resolved.digest)) {
    if ("reason" in fetched) {
      reasons.push(fetched.reason);
      continue;
    }
    const reason = await checkSignature(cache, repo, fetched.bytes, want);
    if (reason === undefined) {
      if (cache.writable)
        cache.store.putBytes({ digest: fetched.digest, size: fetched.bytes.byteLength }, fetched.bytes);
      return fetched.digest;
    }
    reasons.push(reason);
  }
  if (reasons.length === 0)
    throw new PolicyError(
      `Cannot accept "${name}": it has no signature (no ${repo.tag}, no Sigstore bundle among its referrers)`,
    );
  throw new PolicyError(`Cannot accept "${name}": ${[...new Set(reasons)].join("; ")}`);
}

/** Where an image's signatures are looked for: its repository, under cosign's tag for its digest. */
function repositoryOf(ref: Reference, digest: Digest): Reference & { tag: string } {
  return { ...ref, tag: signatureTag(digest), digest: undefined };
}

/** The signature manifests kept with the image's entry (only for the digest it names) that are in the cache. */
function keptSignatures(cache: Cache, resolved: Resolved): Array<{ digest: Digest; bytes: Uint8Array }> {
  if (resolved.entry?.digest !== resolved.digest) return [];
  return parseSignatures(resolved.entry).flatMap((digest) => {
    const bytes = cache.store.readBytes(digest, MAX_MANIFEST_BYTES);
    return bytes !== undefined && digestOf(bytes) === digest ? [{ digest, bytes }] : [];
  });
}

/** A signature manifest the registry gave, verified by its digest; or why what it gave cannot be used. */
type Found = { digest: Digest; bytes: Uint8Array } | { reason: string };

/**
 * The image's signature manifests on the registry, verified by their digests: cosign's simple-signing manifest
 * under `sha256-<hex>.sig`, then each Sigstore bundle among its referrers (asked for only when needed). A manifest
 * or a referrers list that is oversized or not what its digest says is a reason, not an error of the pull.
 */
async function* registrySignatures(
  cache: Cache,
  repo: Reference & { tag: string },
  digest: Digest,
): AsyncGenerator<Found> {
  const client = await cache.client();
  const unusable = (what: string, error: unknown): Found | undefined => {
    if (error instanceof NotFoundError) return undefined;
    if (error instanceof IntegrityError) return { reason: `${what} cannot be used (${error.message.slice(0, 200)})` };
    throw error;
  };
  const get = (tagOrDigest: string, what: string) =>
    client.getManifest(repo, tagOrDigest).catch((error: unknown) => unusable(what, error));
  const simple = await get(repo.tag, "its signature manifest");
  if (simple !== undefined) yield simple;
  let referrers: Digest[] = [];
  try {
    referrers = await listBundleReferrers(cache, repo, digest);
  } catch (error) {
    const found = unusable("its referrers list", error);
    if (found !== undefined) yield found;
  }
  for (const referrer of referrers) {
    const bundle = await get(referrer, "a bundle's manifest");
    if (bundle !== undefined) yield bundle;
  }
}

/** Why a signature manifest (either form) does not vouch for the image, or `undefined` when it does. */
async function checkSignature(
  cache: Cache,
  repo: Reference,
  bytes: Uint8Array,
  want: Want,
): Promise<string | undefined> {
  const manifest = parseObject(bytes);
  if (manifest === undefined) return "a signature manifest is not JSON";
  if (isBundleManifest(manifest)) return checkBundle(cache, repo, manifest, want);
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
  /** Whether it is a JSON object; the image digest and name it claims, when it names them. */
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
  const kept = await keptBlob(cache, repo, {
    mediaType: PAYLOAD_TYPE,
    digest: descriptor.digest,
    size: descriptor.size as number,
  });
  if (typeof kept === "string") return kept;
  const bytes = readFileBounded(kept.path, MAX_PAYLOAD_BYTES);
  const signature = ((descriptor.annotations ?? {}) as Record<string, unknown>)[SIGNATURE_ANNOTATION];
  // Not a JSON object: it claims nothing.
  const claims = parseObject(bytes) as
    | { critical?: { image?: Record<string, unknown>; identity?: Record<string, unknown> } }
    | undefined;
  const signedDigest = claims?.critical?.image?.["docker-manifest-digest"];
  const identity = claims?.critical?.identity?.["docker-reference"];
  const payload: Payload = {
    digest: descriptor.digest,
    bytes,
    json: claims !== undefined,
    ...(typeof signature === "string" && { signature }),
    ...(typeof signedDigest === "string" && { signedDigest }),
    ...(typeof identity === "string" && { identity }),
  };
  return payload;
}

/**
 * A payload's or a bundle's path in the cache, fetched into it when missing; or why it cannot be had: offline and
 * not cached (the image is refused, not "not found"), or its bytes are not what its descriptor says.
 */
async function keptBlob(cache: Cache, repo: Reference, descriptor: Descriptor): Promise<string | { path: string }> {
  const payload = descriptor.mediaType === PAYLOAD_TYPE;
  const what = payload ? "a payload" : "a bundle";
  // Cached: read as it is (what it says is checked against its signature), without loading the download path.
  if (cache.store.stat(descriptor.digest)?.size === descriptor.size)
    return { path: cache.store.blobPath(descriptor.digest) };
  try {
    const { fetchBlob } = await import("./blobs.ts");
    // Progress names it: "fetching REPO:sha256-<hex>.sig signature (…)".
    const { path } = await fetchBlob(cache, repo, descriptor, { files: [payload ? "signature" : "bundle"] });
    return path === undefined ? `${what} could not be kept` : { path };
  } catch (error) {
    if (error instanceof NotFoundError) return `${what} is not cached`;
    if (error instanceof IntegrityError) return `${what} is not the blob its descriptor names`;
    throw error;
  }
}

/** Why one payload does not vouch for the image, or `undefined` when it does. */
async function checkPayload(cache: Cache, repo: Reference, layer: unknown, want: Want): Promise<string | undefined> {
  const payload = await readPayload(cache, repo, layer);
  if (typeof payload === "string") return payload;
  if (payload.signature === undefined) return "a payload has no signature";
  const signed = Buffer.from(payload.signature, "base64");
  if (!want.keys.some((key) => verifies(key, payload.bytes, signed))) return "no signature by a key of the policy";
  if (!payload.json) return "a signed payload is not a JSON object";
  if (payload.signedDigest !== want.digest) return "a signature is for another digest";
  return identityReason(payload.identity, want);
}

/** Why one Sigstore bundle referrer does not vouch for the image, or `undefined` when it does. */
async function checkBundle(cache: Cache, repo: Reference, manifest: unknown, want: Want): Promise<string | undefined> {
  const referrers = { ...repo, tag: referrersTag(want.digest) };
  const bundle = await readBundle(manifest, want.digest, (descriptor) => keptBlob(cache, referrers, descriptor));
  if (typeof bundle === "string") return bundle;
  const signed = await bundleSignedBy(bundle, want.keys);
  if (typeof signed === "string") return signed;
  if (!signed) return "no signature by a key of the policy";
  const subject = bundle.subjects.find((s) => s.digest === want.digest);
  if (subject === undefined) return "a signature is for another digest";
  if (subject.name === undefined)
    return (
      "a bundle names no image (its statement's subject has no name), " +
      `so the policy's ${want.identity.type} cannot hold`
    );
  return identityReason(subject.name, want);
}

/** Why the name a signature gives does not meet the policy's `signedIdentity`, or `undefined` when it does. */
function identityReason(identity: string | undefined, want: Want): string | undefined {
  if (identity !== undefined && identityMatches(identity, want.ref, want.identity)) return undefined;
  const named = String(identity).slice(0, 200);
  return `a signature names "${named}", which the policy's ${want.identity.type} does not accept`;
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

/**
 * Why each key a policy names cannot be used (none when all can), for `doctor`: a pull reads a key only when an image
 * needs it.
 */
export function unusableKeys(policy: Policy): string[] {
  const problems = new Set<string>();
  for (const requirements of [policy.default, ...policy.docker.values()])
    for (const requirement of requirements)
      if (requirement.type === "sigstoreSigned")
        for (const key of requirement.keys) {
          try {
            loadKey(key);
          } catch (error) {
            problems.add((error as Error).message);
          }
        }
  return [...problems];
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

/** One signature manifest of an image, as `inspect` shows it: where it is, and what it claims (not verified). */
export interface InspectedSignature {
  /** cosign's simple-signing manifest, or a Sigstore bundle attached as a referrer. */
  form: "simple-signing" | "bundle";
  /** The tag it is found under: `sha256-<hex>.sig`, or the referrers tag schema's `sha256-<hex>` for a bundle. */
  tag: string;
  /** The signature manifest's digest. */
  manifest: Digest;
  /** A bundle's predicate type (`https://sigstore.dev/cosign/sign/v1` for cosign's signatures). */
  predicateType?: string;
  /** Each payload, or a bundle and each subject of its statement: the image digest and name it claims. */
  payloads: Array<{ digest: Digest; signedDigest?: string; identity?: string }>;
  /** With a policy: whether this is a signature that met it. */
  met?: boolean;
}

/** An image's signatures for `inspect`, and with a policy whether it accepts the image and, if not, why. */
export interface InspectedSignatures {
  signatures: InspectedSignature[];
  accepted?: boolean;
  reason?: string;
}

/**
 * The image's signatures, for `inspect`: those kept with the image, and unless offline the registry's (its
 * simple-signing manifest and its bundle referrers), each with what it claims; with `policy`, whether it accepts the
 * image (the same check as a pull) and which signatures met it.
 */
export async function listSignatures(
  cache: Cache,
  ref: Reference,
  resolved: Resolved,
  policy: Policy | undefined,
): Promise<InspectedSignatures> {
  const repo = repositoryOf(ref, resolved.digest);
  const found = new Map(keptSignatures(cache, resolved).map((kept) => [kept.digest, kept.bytes]));
  if (!cache.options.offline)
    for await (const fetched of registrySignatures(cache, repo, resolved.digest))
      if (!("reason" in fetched)) found.set(fetched.digest, fetched.bytes);
  const signatures: InspectedSignature[] = [];
  for (const [digest, bytes] of found) {
    const listed = await describeSignature(cache, repo, digest, bytes, resolved.digest);
    if (listed !== undefined) signatures.push(listed);
  }
  if (policy === undefined) return { signatures };
  try {
    const met = new Set(await checkPolicy(cache, ref, resolved, policy));
    return { signatures: signatures.map((s) => ({ ...s, met: met.has(s.manifest) })), accepted: true };
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    return { signatures: signatures.map((s) => ({ ...s, met: false })), accepted: false, reason: error.message };
  }
}

/** What one signature manifest claims (not verified); `undefined` for one that is not JSON. */
async function describeSignature(
  cache: Cache,
  repo: Reference & { tag: string },
  digest: Digest,
  bytes: Uint8Array,
  image: Digest,
): Promise<InspectedSignature | undefined> {
  const manifest = parseObject(bytes);
  if (manifest === undefined) return undefined;
  if (isBundleManifest(manifest)) {
    const referrers = { ...repo, tag: referrersTag(image) };
    const bundle = await readBundle(manifest, image, (descriptor) => keptBlob(cache, referrers, descriptor));
    const read = typeof bundle === "string" ? undefined : bundle;
    return {
      form: "bundle",
      tag: referrers.tag,
      manifest: digest,
      ...(read !== undefined && { predicateType: read.predicateType }),
      payloads: (read?.subjects ?? []).map((subject) => ({
        digest: read!.digest,
        ...(subject.digest !== undefined && { signedDigest: subject.digest }),
        ...(subject.name !== undefined && { identity: subject.name.slice(0, 200) }),
      })),
    };
  }
  const layers = Array.isArray(manifest.layers) ? manifest.layers.slice(0, MAX_SIGNATURES) : [];
  const payloads = await Promise.all(layers.map((layer) => readPayload(cache, repo, layer)));
  return {
    form: "simple-signing",
    tag: repo.tag,
    manifest: digest,
    payloads: payloads.flatMap((payload) =>
      typeof payload === "string"
        ? []
        : [
            {
              digest: payload.digest,
              ...(isDigest(payload.signedDigest) && { signedDigest: payload.signedDigest }),
              ...(payload.identity !== undefined && { identity: payload.identity.slice(0, 200) }),
            },
          ],
    ),
  };
}

/**
 * The digests of the signature manifests the registry has for `digest` in `ref`'s repository now: its
 * simple-signing manifest and its bundle referrers. For `lock --check`, which reports a locked one gone.
 */
export async function signaturesNow(cache: Cache, ref: Reference, digest: Digest): Promise<Digest[]> {
  const repo = repositoryOf(ref, digest);
  const now: Digest[] = [];
  try {
    now.push((await (await cache.client()).headManifest(repo, repo.tag)).digest);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
  }
  now.push(...(await listBundleReferrers(cache, repo, digest)));
  return now;
}
