/**
 * The one door through which ocicache reads a file: a blob of the cache, a
 * layout's manifest, a lock file, a config file. Every read opens without
 * blocking (a FIFO planted in a file's place is refused, never waited on),
 * only a regular file, and with a bound: a whole file is read only up to the
 * bound its caller names, so a huge or endless file costs nothing.
 * `scripts/check-io.ts` fails the suite when another module reads a file
 * by itself.
 *
 * @module
 */

import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from "node:fs";
import { IntegrityError } from "../errors.ts";
import { MAX_DECOMPRESSION_RATIO, MIN_DECOMPRESSION_CEILING_BYTES } from "./limits.ts";

/** How a file is opened. */
export interface OpenOptions {
  /**
   * Follow a symbolic link at the path's last component: for files a user names (a config, a lock file, an
   * htpasswd file), never for anything inside the cache or an image layout. @default false
   */
  follow?: boolean;
}

/**
 * Open a file for reading: without following a link (unless `follow`), without blocking, and only if it is a
 * regular file (a FIFO or a device planted in its place is refused).
 *
 * @throws {Error} the file system's error: `ELOOP` for a link, `EINVAL` for what is not a regular file.
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { closeSync } from "node:fs";
 * import { openRegular } from "./read.ts";
 * assert.throws(() => openRegular("/dev/null"), { code: "EINVAL" });
 * closeSync(openRegular("/etc/hostname", { follow: true }));
 * ```
 */
export function openRegular(path: string, options: OpenOptions = {}): number {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.follow ? 0 : constants.O_NOFOLLOW);
  const fd = openSync(path, flags);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw Object.assign(new Error(`"${path}" is not a regular file`), { code: "EINVAL" });
  }
  return fd;
}

/** Read up to `length` bytes at `position` of an open file into `buffer` from `offset`; 0 at the end. */
export function readAt(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
  return readSync(fd, buffer, offset, length, position);
}

/**
 * A whole regular file of at most `maxBytes` (checked before any byte is read, and again while reading: a file that
 * grows meanwhile is cut at the bound and refused).
 *
 * @throws {IntegrityError} when it holds more than `maxBytes`.
 * @throws {Error} the file system's error (see `openRegular`).
 * @example A file over its bound is refused unread
 * ```ts
 * import assert from "node:assert";
 * import { IntegrityError } from "../errors.ts";
import { MAX_DECOMPRESSION_RATIO, MIN_DECOMPRESSION_CEILING_BYTES } from "./limits.ts";
 * import { readFileBounded } from "./read.ts";
 * assert.ok(readFileBounded("/etc/hostname", 4096, { follow: true }).byteLength > 0);
 * assert.throws(() => readFileBounded("/etc/hostname", 1, { follow: true }), IntegrityError);
 * ```
 */
export function readFileBounded(path: string, maxBytes: number, options: OpenOptions = {}): Buffer {
  const fd = openRegular(path, options);
  try {
    const size = fstatSync(fd).size;
    if (size > maxBytes) throw tooLarge(path, size, maxBytes);
    const bytes = Buffer.allocUnsafe(size + 1);
    let done = 0;
    for (;;) {
      const n = readSync(fd, bytes, done, bytes.length - done, done);
      if (n === 0) break;
      done += n;
      if (done > size) throw tooLarge(path, done, maxBytes);
    }
    return bytes.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/**
 * Read `length` bytes of a regular file from `offset` (no link followed), in chunks of at most 1 MiB (one buffer,
 * reused): `onChunk` sees each before the next is read.
 *
 * @throws {IntegrityError} when the file ends first.
 */
export function readRange(path: string, offset: number, length: number, onChunk: (chunk: Uint8Array) => void): void {
  const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, Math.max(length, 1)));
  const fd = openRegular(path);
  try {
    for (let done = 0; done < length; ) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
      if (n === 0)
        throw new IntegrityError(`Cannot read "${path}": it ended after ${done} of the ${length} bytes asked for`);
      onChunk(buffer.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Which bytes of a file a stream reads, and in what chunks. */
export interface FileStreamOptions {
  /** The first byte. @default 0 */
  start?: number;
  /** The last byte, inclusive. @default the file's last */
  end?: number;
  /** The largest chunk read at once (what a slow reader holds in memory). @default 1 MiB */
  chunkBytes?: number;
}

/**
 * A regular file (no link followed), or a range of it, as a stream read only as fast as it is consumed, from an open
 * descriptor: what is read is the file that was checked, whatever is renamed over its path meanwhile. Read to its
 * end, or cancelled, it closes the descriptor.
 *
 * @throws {Error} the file system's error (see `openRegular`), at once.
 * @example The bytes 1 to 3 of a file
 * ```ts
 * import assert from "node:assert";
 * import { writeFileSync } from "node:fs";
 * import { fileStream } from "./read.ts";
 * writeFileSync("/tmp/ocicache-stream-example", "abcdef");
 * const text = await new Response(fileStream("/tmp/ocicache-stream-example", { start: 1, end: 3 })).text();
 * assert.equal(text, "bcd");
 * ```
 */
export function fileStream(path: string, options: FileStreamOptions = {}): ReadableStream<Uint8Array<ArrayBuffer>> {
  return streamOf(openRegular(path), options);
}

/** The stream of `fileStream`, over a descriptor already opened (and checked) by the caller; it closes it. */
function streamOf(fd: number, options: FileStreamOptions): ReadableStream<Uint8Array<ArrayBuffer>> {
  let position = options.start ?? 0;
  const end = options.end === undefined ? Number.POSITIVE_INFINITY : options.end + 1;
  const chunkBytes = options.chunkBytes ?? READ_CHUNK_BYTES;
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  return new ReadableStream<Uint8Array<ArrayBuffer>>(
    {
      pull(controller) {
        const buffer = new Uint8Array(Math.max(0, Math.min(chunkBytes, end - position)));
        let n = 0;
        try {
          if (buffer.length > 0) n = readSync(fd, buffer, 0, buffer.length, position);
        } catch (error) {
          close();
          controller.error(error);
          return;
        }
        if (n === 0) {
          close();
          controller.close();
          return;
        }
        position += n;
        controller.enqueue(buffer.subarray(0, n));
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
}

/**
 * A compressed file (a gzip or zstd tar layer, no link followed) decompressed as a stream, bounded: past 100 times
 * its size (or 256 MiB, whichever is more) the stream fails, so a decompression bomb costs neither memory nor disk.
 *
 * @throws {Error} the file system's error (see `openRegular`), at once.
 * @example A gzip stream past its ceiling fails
 * ```ts
 * import assert from "node:assert";
 * import { writeFileSync } from "node:fs";
 * import { IntegrityError } from "../errors.ts";
import { MAX_DECOMPRESSION_RATIO, MIN_DECOMPRESSION_CEILING_BYTES } from "./limits.ts";
 * import { decompressedStream } from "./read.ts";
 * writeFileSync("/tmp/ocicache-bomb.gz", Bun.gzipSync(new Uint8Array(300 * 1024 * 1024)));
 * const read = async () => {
 *   for await (const _ of decompressedStream("/tmp/ocicache-bomb.gz", "gzip"));
 * };
 * await assert.rejects(read(), IntegrityError);
 * ```
 */
export function decompressedStream(path: string, compression: "gzip" | "zstd"): ReadableStream<Uint8Array> {
  // One descriptor for the size and the bytes: the ceiling is that of the file decompressed, whatever is renamed
  // over its path meanwhile.
  const fd = openRegular(path);
  let size: number;
  try {
    size = fstatSync(fd).size;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  const ceiling = decompressionCeiling(size);
  let total = 0;
  const bound = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      total += chunk.byteLength;
      if (total > ceiling) {
        controller.error(
          new IntegrityError(
            `Cannot decompress "${path}" (${compression}): its ${size} bytes decompress to more than ${ceiling} ` +
              `(at most ${MAX_DECOMPRESSION_RATIO} times their size, or ${MIN_DECOMPRESSION_CEILING_BYTES} bytes)`,
          ),
        );
        return;
      }
      controller.enqueue(chunk);
    },
  });
  return streamOf(fd, {}).pipeThrough(new DecompressionStream(compression)).pipeThrough(bound);
}

/** The most bytes a compressed file of `size` bytes may decompress to. */
function decompressionCeiling(size: number): number {
  return Math.max(MIN_DECOMPRESSION_CEILING_BYTES, size * MAX_DECOMPRESSION_RATIO);
}

/**
 * A file copied to standard output (`cat`'s blob of the cache), from `start` to `end` inclusive when given: Bun
 * sends it from the file without reading it into memory.
 *
 * @throws {Error} `EINVAL` when what is at `path` is not a regular file (a link is not followed).
 */
export function fileBody(path: string, start?: number, end?: number): Blob {
  if (!lstatSync(path).isFile()) throw Object.assign(new Error(`"${path}" is not a regular file`), { code: "EINVAL" });
  const file = Bun.file(path);
  return start === undefined ? file : file.slice(start, end === undefined ? undefined : end + 1);
}

/** Bytes read at once when a file is copied, streamed or hashed again. */
export const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Why a file could not be read, in a few words for a one-line error: `it does not exist`, `it is not a regular
 * file`, `it is larger than 16777216 bytes`.
 */
export function describeReadError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (error instanceof TooLargeError) return `it is larger than ${error.maxBytes} bytes`;
  if (code === "ENOENT" || code === "ENOTDIR") return "it does not exist";
  if (code === "EINVAL" || code === "ELOOP") return "it is not a regular file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/** A file over the bound its reader named. */
class TooLargeError extends IntegrityError {
  readonly maxBytes: number;
  constructor(path: string, size: number, maxBytes: number) {
    super(`Cannot read "${path}": it holds ${size} bytes or more, over the limit of ${maxBytes}`);
    this.maxBytes = maxBytes;
  }
}

function tooLarge(path: string, size: number, maxBytes: number): IntegrityError {
  return new TooLargeError(path, size, maxBytes);
}
