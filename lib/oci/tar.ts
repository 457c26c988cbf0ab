/**
 * Files inside tar layers. In an uncompressed layer a file is found without
 * reading its content: a regular file's bytes are one contiguous range after
 * its 512-byte header. A compressed layer is read as a stream, once, handing
 * the content of the files asked for to a writer as it goes by: never the
 * whole layer in memory. Handles ustar prefixes, GNU long names and PAX
 * `path`/`size` records.
 *
 * @module
 */

import { closeSync } from "node:fs";
import { IntegrityError, NotFoundError } from "../errors.ts";
import { normaliseTarPath } from "./files.ts";
import { openRegular, readAt } from "./read.ts";

/** Where a member's content lies in the tar file. */
export interface TarRange {
  offset: number;
  size: number;
}

const BLOCK = 512;
/** Longest PAX or GNU long-name record read into memory. */
const MAX_META_BYTES = 1024 * 1024;
/** The most PAX or long-name records before one member (Go's archive/tar bounds them the same way). */
const MAX_META_RECORDS = 16;

/**
 * Locate the regular file `name` in the tar at `tarPath` (the last entry of
 * that name wins, as when the layer is unpacked).
 *
 * @throws {NotFoundError} when the tar has no such regular file.
 * @throws {IntegrityError} when the tar is malformed.
 * @example Where a kernel's bytes are in a tar layer
 * ```ts
 * import assert from "node:assert";
 * import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
 * import { findTarMember } from "./tar.ts";
 * mkdirSync("unikraft/bin", { recursive: true });
 * writeFileSync("unikraft/bin/kernel", "a unikernel");
 * Bun.spawnSync(["tar", "-cf", "layer.tar", "unikraft"]);
 * const range = findTarMember("layer.tar", "unikraft/bin/kernel", statSync("layer.tar").size);
 * const bytes = readFileSync("layer.tar").subarray(range.offset, range.offset + range.size);
 * assert.equal(bytes.toString(), "a unikernel");
 * ```
 */
export function findTarMember(tarPath: string, name: string, tarSize: number): TarRange {
  const fd = openRegular(tarPath);
  try {
    return scan(fd, name, tarSize, tarPath);
  } finally {
    closeSync(fd);
  }
}

/** Headers read at their offsets, each member's data skipped by seeking past it: only headers are read. */
function scan(fd: number, name: string, tarSize: number, tarPath: string): TarRange {
  const header = new Uint8Array(BLOCK);
  const headers = new TarHeaders(tarPath);
  let found: TarRange | undefined;
  let position = 0;
  while (position + BLOCK <= tarSize) {
    if (readAt(fd, header, 0, BLOCK, position) !== BLOCK) break;
    const entry = headers.read(header, position);
    if (entry === undefined) break;
    const dataOffset = position + BLOCK;
    if (dataOffset + entry.size > tarSize)
      throw new IntegrityError(`Cannot read tar layer "${tarPath}": a member runs past the end of the layer`);
    if (entry.meta) {
      const buffer = new Uint8Array(entry.size);
      readAt(fd, buffer, 0, entry.size, dataOffset);
      headers.record(entry.type, buffer);
    } else if (entry.regular && entry.name === name) {
      found = { offset: dataOffset, size: entry.size };
    }
    position = dataOffset + Math.ceil(entry.size / BLOCK) * BLOCK;
  }
  if (found === undefined) throw new NotFoundError(`Cannot find "/${name}" in tar layer "${tarPath}"`);
  return found;
}

/** One header, as `TarHeaders` reads it. */
type TarEntry =
  | { meta: true; type: "L" | "x"; size: number }
  | { meta: false; type: string; size: number; name: string; regular: boolean };

/**
 * The header side of a tar walk, shared by the walk that seeks (`findTarMember`) and the one that streams
 * (`extractTarMembers`): checksums, sizes (a PAX `size` overriding the octal one), and each member's name from the
 * PAX or GNU long-name records before it, at most `MAX_META_RECORDS` of them, each at most `MAX_META_BYTES`.
 */
class TarHeaders {
  readonly #what: string;
  #longName: string | undefined;
  #pax: Pax = {};
  #records = 0;

  constructor(what: string) {
    this.#what = what;
  }

  /** The entry `header` starts, or `undefined` at the end of the archive (a zero block). */
  read(header: Uint8Array, position?: number): TarEntry | undefined {
    if (header.every((b) => b === 0)) return undefined;
    if (!checksumOk(header)) {
      const at = position === undefined ? "" : ` at byte ${position}`;
      throw new IntegrityError(`Cannot read tar layer "${this.#what}": bad header checksum${at}`);
    }
    const type = String.fromCharCode(header[156]!);
    const size = this.#pax.size !== undefined ? Number(this.#pax.size) : parseOctal(header.subarray(124, 136));
    if (!Number.isSafeInteger(size) || size < 0)
      throw new IntegrityError(`Cannot read tar layer "${this.#what}": a member has no valid size`);
    if (type === "L" || type === "x") {
      if (size > MAX_META_BYTES)
        throw new IntegrityError(`Cannot read tar layer "${this.#what}": a ${size}-byte header record is too large`);
      if (++this.#records > MAX_META_RECORDS) throw tooManyRecords(this.#what);
      return { meta: true, type, size };
    }
    const name = normaliseTarPath(this.#pax.path ?? this.#longName ?? ustarName(header));
    // A global header (`g`) applies to what follows: the records read before it stay.
    if (type !== "g") {
      this.#longName = undefined;
      this.#pax = {};
      this.#records = 0;
    }
    return { meta: false, type, size, name, regular: type === "0" || type === "\0" };
  }

  /** The content of a metadata record (`L` a long name, `x` PAX records), for the member after it. */
  record(type: "L" | "x", content: Uint8Array): void {
    const text = new TextDecoder().decode(content);
    if (type === "L") this.#longName = text.replace(/\0.*$/s, "");
    else parsePax(text, this.#pax);
  }
}

/** The PAX keys a walk uses; every other record is skipped, so that merging records costs nothing. */
interface Pax {
  path?: string;
  size?: string;
}

/** Read PAX records (`<length> <key>=<value>\n`, POSIX pax, "pax Header Block") into `into`: `path` and `size`. */
function parsePax(text: string, into: Pax): void {
  for (let at = 0; at < text.length; ) {
    const space = text.indexOf(" ", at);
    const length = Number(text.slice(at, space));
    if (space <= at || !Number.isInteger(length) || length <= space - at) break;
    const record = text.slice(space + 1, at + length - 1);
    const eq = record.indexOf("=");
    const key = record.slice(0, eq);
    if (key === "path" || key === "size") into[key] = record.slice(eq + 1);
    at += length;
  }
}

function tooManyRecords(what: string): IntegrityError {
  return new IntegrityError(
    `Cannot read tar layer "${what}": more than ${MAX_META_RECORDS} header records before one member`,
  );
}

function ustarName(header: Uint8Array): string {
  const name = cString(header.subarray(0, 100));
  const magic = cString(header.subarray(257, 263));
  const prefix = magic.startsWith("ustar") ? cString(header.subarray(345, 500)) : "";
  return prefix === "" ? name : `${prefix}/${name}`;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
}

/** Octal, or GNU's base-256 for sizes past 8 GiB (high bit of the first byte set). */
function parseOctal(bytes: Uint8Array): number {
  if ((bytes[0]! & 0x80) !== 0) {
    let value = 0;
    for (let i = 1; i < bytes.length; i++) value = value * 256 + bytes[i]!;
    return value;
  }
  const text = cString(bytes).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

function checksumOk(header: Uint8Array): boolean {
  const stored = parseOctal(header.subarray(148, 156));
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return sum === stored;
}

/** Where `extractTarMembers` writes one file's content. */
export interface MemberSink {
  write(chunk: Uint8Array): void;
}

/**
 * Read a tar stream (a decompressed layer) to its end; the content of each regular file named in `wanted` goes to
 * the sink `open` gives for it (the last entry of a name wins, as when the layer is unpacked: a sink is opened for
 * each). Returns the names found.
 *
 * @throws {IntegrityError} when the tar is malformed or ends inside a member.
 * @example Take a kernel out of a gzip layer as it streams
 * ```ts
 * import assert from "node:assert";
 * import { mkdirSync, writeFileSync } from "node:fs";
 * import { extractTarMembers } from "./tar.ts";
 * mkdirSync("unikraft/bin", { recursive: true });
 * writeFileSync("unikraft/bin/kernel", "a unikernel");
 * Bun.spawnSync(["tar", "-czf", "layer.tar.gz", "unikraft"]);
 * const stream = Bun.file("layer.tar.gz").stream().pipeThrough(new DecompressionStream("gzip"));
 * const chunks: Uint8Array[] = [];
 * const found = await extractTarMembers(stream, new Set(["unikraft/bin/kernel"]), () => ({
 *   write: (chunk: Uint8Array) => void chunks.push(chunk.slice()),
 * }), "layer");
 * assert.deepEqual([...found], ["unikraft/bin/kernel"]);
 * assert.equal(Buffer.concat(chunks).toString(), "a unikernel");
 * ```
 */
export async function extractTarMembers(
  stream: AsyncIterable<Uint8Array>,
  wanted: ReadonlySet<string>,
  open: (name: string, size: number) => MemberSink,
  what: string,
): Promise<Set<string>> {
  const input = new StreamReader(stream[Symbol.asyncIterator]());
  const headers = new TarHeaders(what);
  const found = new Set<string>();
  for (;;) {
    const header = await input.take(BLOCK);
    const entry = header === undefined ? undefined : headers.read(header);
    if (entry === undefined) break;
    const padding = Math.ceil(entry.size / BLOCK) * BLOCK - entry.size;
    if (entry.meta) {
      headers.record(entry.type, await input.need(entry.size, what));
    } else {
      const sink = entry.regular && wanted.has(entry.name) ? open(entry.name, entry.size) : undefined;
      await input.pass(entry.size, sink, what);
      if (sink !== undefined) found.add(entry.name);
    }
    await input.pass(padding, undefined, what);
  }
  return found;
}

/** Exact reads over a stream of chunks of any size. */
class StreamReader {
  readonly #chunks: AsyncIterator<Uint8Array>;
  #head: Uint8Array = new Uint8Array(0);

  constructor(chunks: AsyncIterator<Uint8Array>) {
    this.#chunks = chunks;
  }

  /** The next `n` bytes, or `undefined` at the end of the stream. */
  async take(n: number): Promise<Uint8Array | undefined> {
    while (this.#head.byteLength < n) {
      const next = await this.#chunks.next();
      if (next.done) return undefined;
      this.#head = concat(this.#head, next.value);
    }
    const out = this.#head.subarray(0, n);
    this.#head = this.#head.subarray(n);
    return out;
  }

  /** The next `n` bytes, which must be there. */
  async need(n: number, what: string): Promise<Uint8Array> {
    const bytes = await this.take(n);
    if (bytes === undefined) throw truncated(what);
    return bytes;
  }

  /** Hand the next `n` bytes to `sink` (or drop them) as they come, never holding more than one chunk. */
  async pass(n: number, sink: MemberSink | undefined, what: string): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.#head.byteLength === 0) {
        const next = await this.#chunks.next();
        if (next.done) throw truncated(what);
        this.#head = next.value;
      }
      const part = this.#head.subarray(0, Math.min(left, this.#head.byteLength));
      sink?.write(part);
      this.#head = this.#head.subarray(part.byteLength);
      left -= part.byteLength;
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b;
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

function truncated(what: string): IntegrityError {
  return new IntegrityError(`Cannot read tar layer "${what}": it ends inside a member`);
}
