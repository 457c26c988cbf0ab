/**
 * Sigstore bundles no line of ocicache made: a DSSE envelope over an in-toto statement, signed with a key from
 * `openssl` through the sigstore project's own `@sigstore/sign` (a key-based signer, no transparency log), pushed
 * as an OCI 1.1 referrer of the image the way cosign 3 and GitHub's attestations attach them, and listed under the
 * referrers tag schema (`sha256-<hex>`), which the CNCF distribution registry 2.8 needs.
 *
 * @module
 */

import { createPrivateKey, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { bundleToJSON } from "@sigstore/bundle";
import { DSSEBundleBuilder, type Signature } from "@sigstore/sign";
import { pushBlob, pushManifest } from "./images.ts";

export const BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json";
const EMPTY = "application/vnd.oci.empty.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** What to sign and how; the defaults are cosign 3's `sign --key` with a name in the subject. */
export interface BundleOptions {
  /** The subject's `name` (GitHub's attestations name the repository); `null` for none (cosign 3). */
  name?: string | null;
  /** The digest the statement names, when not the image's (a bundle made for another image). */
  statementDigest?: string;
  /** @default "https://sigstore.dev/cosign/sign/v1" */
  predicateType?: string;
  /** A certificate (PEM) in place of the public-key hint: a keyless bundle. */
  certificate?: string;
  /** Change the bundle after signing (a tampered or malformed bundle). */
  tamper?: (bundle: Record<string, unknown>) => void;
  /** List it among `digest`'s referrers while its manifest's `subject` is this other image. */
  attachedTo?: string;
  /** Whether to list it under the referrers tag schema's tag. @default true */
  listed?: boolean;
}

/** Sign the image `digest` of `repo` with the private key `key` and attach the bundle as a referrer. */
export async function pushBundle(
  url: string,
  repo: string,
  digest: string,
  key: string,
  options: BundleOptions = {},
): Promise<string> {
  const subject = {
    ...(options.name !== null && options.name !== undefined && { name: options.name }),
    digest: { sha256: (options.statementDigest ?? digest).slice("sha256:".length) },
  };
  const statement = {
    _type: "https://in-toto.io/Statement/v1",
    subject: [subject],
    predicateType: options.predicateType ?? "https://sigstore.dev/cosign/sign/v1",
    predicate: {},
  };
  const privateKey = createPrivateKey(readFileSync(key));
  const publicKey = Bun.spawnSync(["openssl", "ec", "-in", key, "-pubout"], { stderr: "ignore" }).stdout.toString();
  const signer = {
    sign: async (data: Buffer): Promise<Signature> => ({
      signature: sign("sha256", data, privateKey),
      key:
        options.certificate === undefined
          ? { $case: "publicKey", publicKey, hint: "" }
          : { $case: "x509Certificate", certificate: options.certificate },
    }),
  };
  const bundle = await new DSSEBundleBuilder({ signer, witnesses: [] }).create({
    data: Buffer.from(JSON.stringify(statement)),
    type: "application/vnd.in-toto+json",
  });
  const json = bundleToJSON(bundle) as Record<string, unknown>;
  options.tamper?.(json);
  const bytes = new TextEncoder().encode(JSON.stringify(json));
  return attachReferrer(url, repo, digest, bytes, statement.predicateType, {
    subject: options.attachedTo,
    listed: options.listed ?? true,
  });
}

/** Push `bytes` as a bundle referrer of `digest` and add it to the referrers tag's index. */
export async function attachReferrer(
  url: string,
  repo: string,
  digest: string,
  bytes: Uint8Array,
  predicateType: string,
  options: { subject?: string | undefined; mediaType?: string; listed?: boolean } = {},
): Promise<string> {
  const mediaType = options.mediaType ?? BUNDLE_TYPE;
  const subject = options.subject ?? digest;
  const head = await fetch(`${url}/v2/${repo}/manifests/${subject}`, {
    method: "HEAD",
    headers: { Accept: `${INDEX}, ${MANIFEST}` },
  });
  const bundleDigest = await pushBlob(url, repo, bytes);
  const empty = new TextEncoder().encode("{}");
  const emptyDigest = await pushBlob(url, repo, empty);
  const annotations = {
    "dev.sigstore.bundle.content": "dsse-envelope",
    "dev.sigstore.bundle.predicateType": predicateType,
  };
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST,
    artifactType: mediaType,
    config: { mediaType: EMPTY, digest: emptyDigest, size: empty.length },
    layers: [{ mediaType, digest: bundleDigest, size: bytes.length }],
    subject: {
      mediaType: head.headers.get("content-type"),
      digest: subject,
      size: Number(head.headers.get("content-length")),
    },
    annotations,
  });
  const manifestDigest = await pushManifest(url, repo, `sha256:${hex(manifest)}`, MANIFEST, manifest);
  if (options.listed === false) return manifestDigest;
  const tag = `sha256-${digest.slice("sha256:".length)}`;
  const existing = await fetch(`${url}/v2/${repo}/manifests/${tag}`, { headers: { Accept: INDEX } });
  const index = existing.ok
    ? ((await existing.json()) as { manifests: object[] })
    : { schemaVersion: 2, mediaType: INDEX, manifests: [] as object[] };
  index.manifests.push({
    mediaType: MANIFEST,
    digest: manifestDigest,
    size: manifest.length,
    artifactType: mediaType,
    annotations,
  });
  await pushManifest(url, repo, tag, INDEX, JSON.stringify(index));
  return manifestDigest;
}

function hex(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}
