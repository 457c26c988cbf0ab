/**
 * `serve --policy`: the mirror hands out a manifest only when the signature policy accepts the image it belongs to,
 * checked as a pull checks it (`pull/signatures`), the signatures that met it kept with the image. A refused manifest
 * is the registry's `DENIED` (403) with the reason, so containerd and podman say why. The platform manifests of an
 * accepted index are then served by their digest (a signature names the index, not each platform); blobs are not
 * gated, since a client reaches them only through a manifest.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";
import type { Manifest } from "../oci/manifest.ts";
import { SIGNATURES_ANNOTATION } from "../oci/names.ts";
import type { Policy } from "../oci/policy.ts";
import type { Reference } from "../oci/reference.ts";
import type { Cache, Resolved } from "../pull/cache.ts";

/** Manifests remembered as accepted, at most; the oldest is forgotten first (and checked again when asked). */
const MAX_ACCEPTED = 10_000;

/** One server's policy, and the manifests it accepted, each under its repository (scopes are per repository). */
export class PolicyGate {
  readonly policy: Policy;
  #accepted = new Set<string>();

  constructor(policy: Policy) {
    this.policy = policy;
  }

  /**
   * Check the manifest `resolved` names for `ref`. Returns the annotations that keep the signatures that met the
   * policy with the image, when it was checked now (none when it was accepted before).
   *
   * @throws {PolicyError} when the policy refuses it.
   */
  async admit(cache: Cache, ref: Reference, resolved: Resolved, manifest: Manifest): Promise<Record<string, string>> {
    if (this.#accepted.has(key(ref, resolved.digest))) return {};
    const { checkPolicy } = await import("../pull/signatures.ts");
    const met = await checkPolicy(cache, ref, resolved, this.policy);
    this.#remember(ref, resolved.digest);
    if (manifest.kind === "index") for (const child of manifest.manifests) this.#remember(ref, child.digest);
    return met.length === 0 ? {} : { [SIGNATURES_ANNOTATION]: JSON.stringify(met) };
  }

  #remember(ref: Reference, digest: Digest): void {
    const name = key(ref, digest);
    this.#accepted.delete(name);
    this.#accepted.add(name);
    if (this.#accepted.size > MAX_ACCEPTED) this.#accepted.delete(this.#accepted.values().next().value!);
  }
}

function key(ref: Reference, digest: Digest): string {
  return `${ref.registry}/${ref.repository}@${digest}`;
}
