/**
 * The socket of `ocicache serve`: a `fetch` handler (the Hono app) served over `node:http`, because what goes over
 * the wire must be what the handler says. `Bun.serve` (Bun 1.4.5) frames every stream body in chunks and drops the
 * `Content-Length` the handler set (measured: a mirror client got a blob not yet cached with no length), while
 * Bun's `node:http` writes the headers as given; streamed, it moves a cached blob as fast (about 1.8 GiB/s here).
 *
 * A client that goes away cancels its response body (a download it was following goes on for the others); a
 * connection that carries nothing for `idleTimeoutSeconds` is closed; `stop` lets the requests in flight finish.
 *
 * @module
 */

import { closeSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { fileStream, openRegular, readAt } from "../oci/read.ts";

/** A listening server. */
export interface Listener {
  /** The port it listens on (the one asked for, or the one the system chose for 0). */
  port: number;
  /** Stop accepting connections, close the idle ones, and wait for the requests in flight. */
  stop(): Promise<void>;
}

/** Where and how to listen. */
export interface ListenOptions {
  hostname: string;
  port: number;
  /** A connection that carries nothing for this long is closed. @default 60 */
  idleTimeoutSeconds?: number;
}

/**
 * Serve `handler` until `stop`.
 *
 * @throws {Error} the system's error when the address cannot be listened on (`EADDRINUSE`, `EACCES`).
 * @example A stream body keeps its Content-Length on the wire
 * ```ts
 * import assert from "node:assert";
 * import { listenHttp } from "./listener.ts";
 * const body = () => new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(5)); c.close(); } });
 * const server = await listenHttp(() => new Response(body(), { headers: { "Content-Length": "5" } }), {
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * const response = await fetch(`http://127.0.0.1:${server.port}/`);
 * assert.equal(response.headers.get("content-length"), "5");
 * assert.equal((await response.bytes()).byteLength, 5);
 * await server.stop();
 * ```
 */
export async function listenHttp(
  handler: (request: Request) => Response | Promise<Response>,
  options: ListenOptions,
): Promise<Listener> {
  const base = `http://${options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname}`;
  let stopping = false;
  const server = createServer((req, res) => {
    // Once stopping, a connection whose request is answered is closed, not kept alive for the next.
    res.once("finish", () => {
      if (stopping) server.closeIdleConnections();
    });
    answer(handler, base, req, res).catch(() => res.destroy());
  });
  const idleMs = (options.idleTimeoutSeconds ?? 60) * 1000;
  server.keepAliveTimeout = idleMs;
  server.timeout = idleMs;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : options.port,
    stop: () =>
      new Promise<void>((resolve) => {
        stopping = true;
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

async function answer(
  handler: (request: Request) => Response | Promise<Response>,
  base: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const aborted = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) aborted.abort();
  });
  // Only a path is a request target here (RFC 9112, origin-form): an absolute URL or `*` is no request for this server.
  if (req.url === undefined || !req.url.startsWith("/")) {
    res.writeHead(400, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ code: "EUSAGE", message: "The request target is not a path" }));
    return;
  }
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  // The URL names the listen address: the Host a client sent stays in its header, for the app's Host check.
  const request = new Request(`${base}${req.url}`, {
    method,
    headers,
    signal: aborted.signal,
    ...(hasBody && { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" }),
  });
  const response = await handler(request);
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response instanceof FileResponse && method !== "HEAD") {
    await response.body?.cancel();
    await sendFile(response.file, res, aborted.signal);
    return;
  }
  if (response.body === null || method === "HEAD") {
    await response.body?.cancel();
    res.end();
    return;
  }
  // The status and headers go out now, not with the first chunk: a client waiting for a queued download knows it
  // was answered.
  res.flushHeaders();
  const reader = response.body.getReader();
  aborted.signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  for (;;) {
    let next: Awaited<ReturnType<typeof reader.read>>;
    try {
      next = await reader.read();
    } catch {
      // The body failed (bytes that did not verify, an upstream gone): the client must see a failure, never an end.
      res.destroy();
      return;
    }
    if (next.done || aborted.signal.aborted) break;
    if (!res.write(next.value)) await drained(res);
  }
  if (!aborted.signal.aborted) res.end();
}

/** A byte range of a regular file, and the largest chunk to read of it at once. */
export interface FileRange {
  path: string;
  start: number;
  /** The last byte, inclusive. */
  end: number;
  chunkBytes: number;
}

/**
 * A response whose body is a range of a file (a cached blob). Read as any response, its body streams the file; this
 * listener sends it from the file with one buffer per client, reused once the socket took its bytes, so that many
 * clients of cached blobs cost no memory to collect.
 */
export class FileResponse extends Response {
  readonly file: FileRange;

  constructor(file: FileRange, init: ResponseInit) {
    super(fileStream(file.path, file), init);
    this.file = file;
  }
}

async function sendFile(file: FileRange, res: ServerResponse, aborted: AbortSignal): Promise<void> {
  let fd: number;
  try {
    fd = openRegular(file.path);
  } catch {
    res.destroy();
    return;
  }
  const buffer = Buffer.allocUnsafe(Math.min(file.chunkBytes, Math.max(file.end - file.start + 1, 1)));
  try {
    for (let position = file.start; position <= file.end && !aborted.aborted; ) {
      const n = readAt(fd, buffer, 0, Math.min(buffer.length, file.end + 1 - position), position);
      if (n === 0) {
        res.destroy();
        return;
      }
      position += n;
      // The buffer is filled again only once the socket has taken these bytes.
      await written(res, buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  if (!aborted.aborted) res.end();
}

/** Until the socket has taken `chunk` (or is closed): one chunk per client in memory, however slowly it reads. */
function written(res: ServerResponse, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("close", done);
      resolve();
    };
    res.once("close", done);
    res.write(chunk, done);
  });
}

/** Until `res` can take more, or is closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}
