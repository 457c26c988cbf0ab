/**
 * Manifests kept in memory by one cache, bounded by bytes: a long-running
 * `serve` asks for many, and none may make the memory grow without end.
 *
 * @module
 */

import type { Digest } from "../oci/digest.ts";

/** The bytes of manifests kept in memory by one cache (a long-running `serve` asks for many). */
export const MANIFEST_MEMORY_BYTES = 16 * 1024 * 1024;

/** Manifests in memory, the least recently used dropped first once they hold more than `limit` bytes. */
export class ManifestMemory {
  readonly #limit: number;
  #bytes = 0;
  #entries = new Map<Digest, Uint8Array>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The bytes of a manifest, now the most recently used. */
  get(digest: Digest): Uint8Array | undefined {
    const bytes = this.#entries.get(digest);
    if (bytes !== undefined) {
      this.#entries.delete(digest);
      this.#entries.set(digest, bytes);
    }
    return bytes;
  }

  /** Keep a manifest, dropping the least recently used past the limit. */
  set(digest: Digest, bytes: Uint8Array): void {
    const old = this.#entries.get(digest);
    if (old !== undefined) {
      this.#bytes -= old.byteLength;
      this.#entries.delete(digest);
    }
    this.#entries.set(digest, bytes);
    this.#bytes += bytes.byteLength;
    for (const [oldest, kept] of this.#entries) {
      if (this.#bytes <= this.#limit) break;
      this.#entries.delete(oldest);
      this.#bytes -= kept.byteLength;
    }
  }
}
