/**
 * Signatures no line of ocicache made: keys from `openssl ecparam -genkey`, and cosign's "simple signing" form
 * written by hand: a payload naming the image's digest and identity, signed by `openssl dgst -sha256 -sign` (the
 * DER ECDSA signature cosign writes), pushed as the manifest of the tag `sha256-<hex>.sig`.
 *
 * @module
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pushBlob, pushManifest } from "./images.ts";

/** A P-256 key pair in `dir`: the private key's path, and the public key's (PEM). */
export function makeKey(dir: string, name: string): { key: string; pub: string } {
  const key = join(dir, `${name}.key`);
  const pub = join(dir, `${name}.pub`);
  run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", key]);
  run(["openssl", "ec", "-in", key, "-pubout", "-out", pub]);
  return { key, pub };
}

/**
 * Sign `digest` of `repo` as `identity` with the private key `key`, and push the signature manifest. `signedDigest`
 * puts another digest in the payload (a signature made for another image); `alter` changes its layers (a hostile
 * signature manifest).
 */
export async function pushSignature(
  url: string,
  repo: string,
  digest: string,
  identity: string,
  key: string,
  dir: string,
  signedDigest = digest,
  alter?: (layers: Array<Record<string, unknown>>) => Array<Record<string, unknown>>,
): Promise<void> {
  const payload = JSON.stringify({
    critical: {
      identity: { "docker-reference": identity },
      image: { "docker-manifest-digest": signedDigest },
      type: "cosign container image signature",
    },
    optional: null,
  });
  const payloadFile = join(dir, `payload-${digest.slice(7, 19)}-${Math.random()}`);
  writeFileSync(payloadFile, payload);
  const signature = run(["openssl", "dgst", "-sha256", "-sign", key, payloadFile]);
  const bytes = new TextEncoder().encode(payload);
  const payloadDigest = await pushBlob(url, repo, bytes);
  const config = new TextEncoder().encode("{}");
  const configDigest = await pushBlob(url, repo, config);
  const mediaType = "application/vnd.oci.image.manifest.v1+json";
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: [
      {
        mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
        digest: payloadDigest,
        size: bytes.length,
        annotations: { "dev.cosignproject.cosign/signature": signature.toString("base64") },
      },
    ],
  };
  const layers = alter === undefined ? manifest.layers : alter(manifest.layers);
  const body = JSON.stringify({ ...manifest, layers });
  await pushManifest(url, repo, `sha256-${digest.slice(7)}.sig`, mediaType, body);
}

function run(argv: string[]): Buffer {
  const ran = Bun.spawnSync(argv);
  if (ran.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${ran.stderr.toString()}`);
  return ran.stdout;
}
