/**
 * A fault server that speaks HTTP/1.1 by hand over a TCP socket, for faults
 * a well-behaved server cannot produce: a wrong `Content-Length`, a
 * connection dropped mid-body, a body that stalls. Requests it does not
 * fault are forwarded to the real registry.
 *
 * @module
 */

import type { Socket } from "bun";

export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

/** Decide an answer: write to the socket (and end it), or return false to forward. */
export type RawFault = (
  request: RawRequest,
  socket: Socket<undefined>,
  upstream: () => Promise<Response>,
) => Promise<boolean> | boolean;

export interface RawServer {
  host: string;
  requests: RawRequest[];
  stop(): void;
}

/** Start a raw server in front of `target`. */
export function startRawServer(target: string, fault: RawFault): RawServer {
  const requests: RawRequest[] = [];
  const buffers = new Map<Socket<undefined>, string>();
  const server = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async data(socket, data) {
        const text = (buffers.get(socket) ?? "") + data.toString("latin1");
        const end = text.indexOf("\r\n\r\n");
        if (end === -1) {
          buffers.set(socket, text);
          return;
        }
        buffers.delete(socket);
        const [line, ...rest] = text.slice(0, end).split("\r\n");
        const [method, path] = line!.split(" ");
        const headers = Object.fromEntries(
          rest.map((h) => [h.slice(0, h.indexOf(":")).toLowerCase(), h.slice(h.indexOf(":") + 1).trim()]),
        );
        const request = { method: method!, path: path!, headers };
        requests.push(request);
        const upstream = () =>
          fetch(`${target}${path}`, {
            method,
            headers: Object.fromEntries(Object.entries(headers).filter(([k]) => k !== "host" && k !== "connection")),
            redirect: "manual",
          });
        if (await fault(request, socket, upstream)) return;
        const response = await upstream();
        const body = method === "HEAD" ? new Uint8Array() : new Uint8Array(await response.arrayBuffer());
        writeResponse(
          socket,
          response.status,
          response.headers,
          body,
          method === "HEAD" ? Number(response.headers.get("content-length") ?? 0) : body.length,
        );
        endAfterFlush(socket);
      },
      drain(socket) {
        flush(socket);
      },
      close(socket) {
        buffers.delete(socket);
        PENDING.delete(socket);
      },
    },
  });
  return { host: `127.0.0.1:${server.port}`, requests, stop: () => server.stop(true) };
}

/** Write a status line, headers (with the given `Content-Length`) and a body. */
export function writeResponse(
  socket: Socket<undefined>,
  status: number,
  headers: Headers,
  body: Uint8Array,
  contentLength: number,
): void {
  const lines = [`HTTP/1.1 ${status} X`];
  headers.forEach((value, key) => {
    if (!["content-length", "connection", "transfer-encoding", "keep-alive"].includes(key))
      lines.push(`${key}: ${value}`);
  });
  lines.push(`Content-Length: ${contentLength}`, "Connection: close", "", "");
  send(socket, new TextEncoder().encode(lines.join("\r\n")));
  if (body.length > 0) send(socket, body);
}

interface Pending {
  chunks: Uint8Array[];
  end: boolean;
}

const PENDING = new Map<Socket<undefined>, Pending>();

/** Queue bytes for the socket; what the kernel does not take now goes on `drain`. */
export function send(socket: Socket<undefined>, bytes: Uint8Array): void {
  const pending = PENDING.get(socket) ?? { chunks: [], end: false };
  pending.chunks.push(bytes);
  PENDING.set(socket, pending);
  flush(socket);
}

/** Close the socket once everything queued is written. */
export function endAfterFlush(socket: Socket<undefined>): void {
  const pending = PENDING.get(socket) ?? { chunks: [], end: false };
  pending.end = true;
  PENDING.set(socket, pending);
  flush(socket);
}

function flush(socket: Socket<undefined>): void {
  const pending = PENDING.get(socket);
  if (pending === undefined) return;
  while (pending.chunks.length > 0) {
    const chunk = pending.chunks[0]!;
    const written = socket.write(chunk);
    if (written < chunk.length) {
      pending.chunks[0] = chunk.subarray(Math.max(0, written));
      return;
    }
    pending.chunks.shift();
  }
  if (pending.end) {
    PENDING.delete(socket);
    socket.end();
  }
}
