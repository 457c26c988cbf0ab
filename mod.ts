#!/usr/bin/env bun
/**
 * ocicache: a local pull-through cache for artifacts pulled from OCI
 * registries. Run as a program it is the CLI; imported, it is the library.
 *
 * @example
 * ```ts
 * import { Cache, parseReference, pullImage } from "ocicache";
 * const cache = new Cache({ dir: "/tmp/ocicache" });
 * const result = await pullImage(cache, parseReference("127.0.0.1:5000/unikraft/nginx:1.25"), { outDir: ".unikraft" });
 * console.log(result.files.map((f) => f.path));
 * ```
 *
 * @module
 */

import { main } from "./lib/cli.ts";

export { Cache, type BlobProgress, type CacheOptions } from "./lib/cache.ts";
export { main } from "./lib/cli.ts";
export { digestOf, parseDigest, Verifier, verifyStream, type Digest } from "./lib/digest.ts";
export { AuthError, DigestMismatchError, EXIT_CODES, IntegrityError, NotFoundError, OcicacheError, RegistryError, SizeMismatchError, StoreError, UsageError } from "./lib/errors.ts";
export { pullLayout } from "./lib/local.ts";
export { parsePlatform } from "./lib/platform.ts";
export { pullBlob, pullImage, type PulledFile, type PullOptions, type PullResult } from "./lib/pull.ts";
export { formatReference, parseLayoutSource, parseReference, type Reference } from "./lib/reference.ts";

if (import.meta.main) process.exitCode = await main(Bun.argv.slice(2));
