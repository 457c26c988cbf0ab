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

export { Cache, type BlobProgress, type CacheOptions } from "./lib/pull/cache.ts";
export { main } from "./lib/cli/main.ts";
export { digestOf, parseDigest, Verifier, verifyStream, type Digest } from "./lib/oci/digest.ts";
export {
  AuthError,
  DigestMismatchError,
  EXIT_CODES,
  IntegrityError,
  NotFoundError,
  OcicacheError,
  RegistryError,
  SizeMismatchError,
  StoreError,
  UsageError,
} from "./lib/errors.ts";
export { parsePlatform } from "./lib/oci/platform.ts";
export type { PulledFile } from "./lib/pull/place.ts";
export {
  pullAllPlatforms,
  pullBlob,
  pullImage,
  pullLayout,
  type PullOptions,
  type PullResult,
} from "./lib/pull/pull.ts";
export {
  emptyLock,
  lockEntry,
  readLock,
  writeLock,
  type LockedReference,
  type LockFile,
  type LockUse,
} from "./lib/pull/lock.ts";
export { formatReference, parseLayoutSource, parseReference, type Reference } from "./lib/oci/reference.ts";

if (import.meta.main) {
  const { main } = await import("./lib/cli/main.ts");
  process.exitCode = await main(Bun.argv.slice(2));
}
