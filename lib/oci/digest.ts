/**
 * Digests: strict parsing (no path tricks reach the file system) and
 * verification that hashes and counts every byte as it streams.
 *
 * @module
 */

import { closeSync } from "node:fs";
import { DigestMismatchError, SizeMismatchError, UsageError } from "../errors.ts";
import { openRegular, readAt } from "./read.ts";

/** A validated `sha256:<64 lowercase hex>` digest. */
export type Digest = string & { readonly __digest: unique symbol };

/** The only digest algorithm a cached blob may be named by. */
export const DIGEST_ALGORITHM = "sha256";

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * Parse a digest; only `sha256:` followed by 64 lowercase hex digits passes.
 *
 * @throws {UsageError} for anything else (other algorithms, uppercase, `..`, NUL).
 * @example Accept only sha256 digests
 * ```ts
 * import assert from "node:assert";
 * import { parseDigest, UsageError } from "ocicache";
 * const digest = parseDigest(`sha256:${"a".repeat(64)}`);
 * assert.equal(digest.length, 71);
 * assert.throws(() => parseDigest("sha256:../../etc/passwd"), UsageError);
 * ```
 */
export function parseDigest(input: string): Digest {
  if (typeof input === "string" && DIGEST_RE.test(input)) return input as Digest;
  const text = JSON.stringify(String(input).slice(0, 80)).slice(1, -1);
  const algorithm = String(input).split(":", 1)[0];
  if (
    String(input).includes(":") &&
    algorithm !== DIGEST_ALGORITHM &&
    /^[a-z0-9]+([+._-][a-z0-9]+)*$/.test(algorithm ?? "")
  ) {
    throw new UsageError(`Cannot parse digest "${text}": unsupported algorithm "${algorithm}" (only sha256)`);
  }
  throw new UsageError(`Cannot parse digest "${text}": expected sha256:<64 lowercase hex>`);
}

/** Whether a string is a valid digest. */
export function isDigest(input: unknown): input is Digest {
  return typeof input === "string" && DIGEST_RE.test(input);
}

/** The hex part of a digest, which names its file under `blobs/sha256/`. */
export function digestHex(digest: Digest): string {
  return digest.slice(DIGEST_ALGORITHM.length + 1);
}

/**
 * The digest of bytes held in memory.
 * @example Hash bytes in memory
 * ```ts
 * import assert from "node:assert";
 * import { digestOf } from "ocicache";
 * assert.equal(digestOf("hello"), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
 * ```
 */
export function digestOf(bytes: Uint8Array | string): Digest {
  return `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}` as Digest;
}

/** What a stream of bytes must turn out to be. */
export interface Expected {
  digest: Digest;
  size: number;
}

/**
 * Hashes and counts bytes as they pass. It refuses a byte past the expected
 * size at once, and `finish()` checks the size and the digest at the end.
 * @example Check a stream chunk by chunk
 * ```ts
 * import assert from "node:assert";
 * import { DigestMismatchError, digestOf, Verifier } from "ocicache";
 * const bytes = new TextEncoder().encode("hello");
 * const verifier = new Verifier({ digest: digestOf(bytes), size: bytes.length });
 * verifier.update(bytes.subarray(0, 2));
 * verifier.update(bytes.subarray(2));
 * verifier.finish();
 * const wrong = new Verifier({ digest: digestOf("other"), size: bytes.length });
 * wrong.update(bytes);
 * assert.throws(() => wrong.finish(), DigestMismatchError);
 * ```
 */
export class Verifier {
  readonly expected: Expected;
  readonly what: string;
  #hasher = new Bun.CryptoHasher("sha256");
  #received = 0;
  #actual: string | undefined;

  constructor(expected: Expected, what: string = expected.digest) {
    this.expected = expected;
    this.what = what;
  }

  /** Forget every byte counted, to start over. */
  reset(): void {
    this.#hasher = new Bun.CryptoHasher("sha256");
    this.#received = 0;
    this.#actual = undefined;
  }

  /** The bytes counted so far. */
  get received(): number {
    return this.#received;
  }

  /**
   * Count and hash one chunk.
   *
   * @throws {SizeMismatchError} when the chunk runs past the expected size.
   */
  update(chunk: Uint8Array): void {
    this.#received += chunk.byteLength;
    if (this.#received > this.expected.size) {
      throw new SizeMismatchError(this.expected.size, this.#received, this.what);
    }
    this.#hasher.update(chunk);
  }

  /**
   * Check the size and digest of everything counted (again and again: the
   * digest is computed once).
   *
   * @throws {SizeMismatchError} when fewer bytes arrived than expected.
   * @throws {DigestMismatchError} when the bytes hash to another digest.
   */
  finish(): void {
    if (this.#received !== this.expected.size) {
      throw new SizeMismatchError(this.expected.size, this.#received, this.what);
    }
    this.#actual ??= `sha256:${this.#hasher.digest("hex")}`;
    const actual = this.#actual;
    if (actual !== this.expected.digest) {
      throw new DigestMismatchError(this.expected.digest, actual, this.what);
    }
  }
}

/**
 * Pass a stream through unchanged while verifying it: the returned stream
 * errors instead of ending when the size or digest is wrong.
 * @example Verify a response body as it is read
 * ```ts
 * import assert from "node:assert";
 * import { digestOf, verifyStream } from "ocicache";
 * const bytes = new TextEncoder().encode("hello");
 * const checked = verifyStream(new Response(bytes).body!, { digest: digestOf(bytes), size: 5 });
 * assert.equal(await new Response(checked).text(), "hello");
 * const forged = verifyStream(new Response("hellO").body!, { digest: digestOf(bytes), size: 5 });
 * await assert.rejects(new Response(forged).text());
 * ```
 */
export function verifyStream(stream: ReadableStream<Uint8Array>, expected: Expected): ReadableStream<Uint8Array> {
  const verifier = new Verifier(expected);
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        verifier.update(chunk);
        controller.enqueue(chunk);
      },
      flush() {
        verifier.finish();
      },
    }),
  );
}

/** Bytes read per call when hashing a file. */
const HASH_CHUNK_BYTES = 1024 * 1024;

/**
 * The digest and size of a file, or of `length` bytes of it from `offset`.
 *
 * @example
 * ```ts
 * import { hashFile } from "./digest.ts";
 * const { digest, size } = hashFile("/etc/hostname");
 * ```
 */
export function hashFile(path: string, offset = 0, length?: number): { digest: Digest; size: number } {
  const hasher = new Bun.CryptoHasher("sha256");
  const fd = openRegular(path);
  const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
  let size = 0;
  try {
    for (;;) {
      const want = length === undefined ? HASH_CHUNK_BYTES : Math.min(HASH_CHUNK_BYTES, length - size);
      if (want === 0) break;
      const n = readAt(fd, buffer, 0, want, offset + size);
      if (n === 0) break;
      hasher.update(buffer.subarray(0, n));
      size += n;
    }
  } finally {
    closeSync(fd);
  }
  return { digest: `sha256:${hasher.digest("hex")}` as Digest, size };
}

/**
 * The digest of a whole file, read with one buffer and yielding to the event
 * loop between chunks, so that a server hashing a large blob keeps answering.
 *
 * @example Hash a file without blocking
 * ```ts
 * import assert from "node:assert";
 * import { writeFileSync } from "node:fs";
 * import { digestOf, hashFileAsync } from "./digest.ts";
 * writeFileSync("/tmp/ocicache-hash-example", "hello");
 * assert.equal(await hashFileAsync("/tmp/ocicache-hash-example"), digestOf("hello"));
 * ```
 */
export async function hashFileAsync(path: string): Promise<Digest> {
  const hasher = new Bun.CryptoHasher("sha256");
  const fd = openRegular(path);
  const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
  try {
    for (let position = 0; ; ) {
      const n = readAt(fd, buffer, 0, buffer.length, position);
      if (n === 0) break;
      hasher.update(buffer.subarray(0, n));
      position += n;
      if (position % (8 * HASH_CHUNK_BYTES) === 0) await Bun.sleep(0);
    }
  } finally {
    closeSync(fd);
  }
  return `sha256:${hasher.digest("hex")}` as Digest;
}
