/**
 * The bounds ocicache puts on what registries and clients send, in one place.
 *
 * @module
 */

/** The largest manifest accepted, in bytes (the distribution spec lets registries refuse past 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** The largest blob a descriptor or a `Content-Length` may claim (1 TiB). */
export const MAX_BLOB_BYTES = 2 ** 40;
/** How long a registry body may send nothing, when no idle timeout is configured. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** How long a small body (a manifest, a token, an error) may take in all. */
export const SMALL_BODY_DEADLINE_MS = 60_000;
/** How long a pull waits for another process's download of the same blob. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10 * 60_000;
/** A blob slower than this many bytes per second … */
export const DEFAULT_LOW_SPEED_BYTES_PER_SECOND = 1024;
/** … on average over this long fails (curl's `--speed-limit 1024 --speed-time 60`). */
export const DEFAULT_LOW_SPEED_WINDOW_MS = 60_000;
/** The largest `index.json` read (a cache's, or an image layout's): some 100,000 references. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;
/** The largest file a user points ocicache at (a config, a lock file, an htpasswd file, a registry's auth file). */
export const MAX_USER_FILE_BYTES = 16 * 1024 * 1024;
/**
 * A compressed layer may decompress to at most this many times its size (a kernel or an initrd compresses a few
 * times; a gzip bomb a thousand) …
 */
export const MAX_DECOMPRESSION_RATIO = 100;
/** … or to this many bytes, whichever is more: a small layer of zeros is no bomb. */
export const MIN_DECOMPRESSION_CEILING_BYTES = 256 * 1024 * 1024;
/** The most bytes of one repository's tag list read, all its pages together. */
export const MAX_TAG_LIST_BYTES = 16 * 1024 * 1024;
/** The most tags of one repository accepted, and the most the mirror remembers of all repositories together. */
export const MAX_TAGS = 100_000;
/** The most requests ocicache has in flight to a registry at once for a walk of many manifests (`inspect`). */
export const MAX_MANIFEST_REQUESTS = 8;
/** The largest `WWW-Authenticate` header answered. */
export const MAX_CHALLENGE_BYTES = 16 * 1024;
