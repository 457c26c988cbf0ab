#!/usr/bin/env bun

/**
 * ocicache: a local pull-through cache for artifacts pulled from OCI
 * registries. Imported, it is the library (re-exports only); run as a
 * program (`bun mod.ts …`) it loads the CLI, whose own entry
 * `lib/cli/main.ts` is what `bin` and the compiled binary start.
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

export { main } from "./lib/cli/main.ts";
export {
  AuthError,
  DigestMismatchError,
  EXIT_CODES,
  IntegrityError,
  NotFoundError,
  OcicacheError,
  PolicyError,
  RegistryError,
  SizeMismatchError,
  StoreError,
  UsageError,
} from "./lib/errors.ts";
export { type Digest, digestOf, parseDigest, Verifier, verifyStream } from "./lib/oci/digest.ts";
export { parsePlatform } from "./lib/oci/platform.ts";
export { formatReference, parseLayoutSource, parseReference, type Reference } from "./lib/oci/reference.ts";
export { type BlobProgress, Cache, type CacheOptions } from "./lib/pull/cache.ts";
export {
  emptyLock,
  type LockedReference,
  type LockFile,
  type LockUse,
  lockEntry,
  readLock,
  writeLock,
} from "./lib/pull/lock.ts";
export type { PulledFile } from "./lib/pull/place.ts";
export {
  type PullOptions,
  type PullResult,
  pullAllPlatforms,
  pullBlob,
  pullImage,
  pullLayout,
} from "./lib/pull/pull.ts";

if (import.meta.main) {
  const { main } = await import("./lib/cli/main.ts");
  process.exitCode = await main(Bun.argv.slice(2));
}
