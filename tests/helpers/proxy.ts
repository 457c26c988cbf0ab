/**
 * A small in-process HTTP server in front of the real registry: it forwards
 * every request, records what was asked, and lets a test inject a fault
 * (corrupt bytes, a status, a challenge, a stall) into chosen answers.
 *
 * @module
 */

import type { Server } from "bun";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

export interface ProxyHandle {
  /** `127.0.0.1:<port>` */
  host: string;
  url: string;
  requests: RecordedRequest[];
  /** The requests whose path contains `part`, optionally of one method. */
  count(part: string, method?: string): number;
  stop(): Promise<void>;
}

/** Decides the answer: return `forward()` unchanged, altered, or a response of its own. */
export type ProxyHook = (request: Request, forward: () => Promise<Response>) => Response | Promise<Response>;

/** Start a proxy to `target` (`http://127.0.0.1:5000`), on `port` (by default, any free one). */
export function startProxy(target: string, hook?: ProxyHook, port = 0): ProxyHandle {
  const requests: RecordedRequest[] = [];
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port,
    idleTimeout: 0,
    async fetch(request) {
      const url = new URL(request.url);
      requests.push({
        method: request.method,
        path: url.pathname + url.search,
        headers: Object.fromEntries(request.headers),
      });
      const forward = async () => {
        const headers = new Headers(request.headers);
        headers.delete("host");
        const response = await fetch(`${target}${url.pathname}${url.search}`, {
          method: request.method,
          headers,
          redirect: "manual",
          decompress: false,
          ...(request.method !== "GET" && request.method !== "HEAD" && { body: await request.arrayBuffer() }),
        });
        const out = new Headers(response.headers);
        out.delete("transfer-encoding");
        return new Response(request.method === "HEAD" ? null : response.body, {
          status: response.status,
          headers: out,
        });
      };
      return hook === undefined ? forward() : hook(request, forward);
    },
  });
  const host = `127.0.0.1:${server.port}`;
  return {
    host,
    url: `http://${host}`,
    requests,
    count: (part, method) =>
      requests.filter((r) => r.path.includes(part) && (method === undefined || r.method === method)).length,
    stop: async () => {
      await server.stop(true);
    },
  };
}

/** A response whose body is `bytes` with one byte flipped at `at`. */
export async function corrupt(response: Response, at = 0): Promise<Response> {
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length > 0) bytes[at % bytes.length]! ^= 0xff;
  return new Response(bytes, { status: response.status, headers: response.headers });
}

/** The same response, its body sent `chunkBytes` at a time every `delayMs`: a slow registry. */
export async function trickle(response: Response, chunkBytes: number, delayMs: number): Promise<Response> {
  const bytes = new Uint8Array(await response.arrayBuffer());
  let sent = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      async pull(controller) {
        await Bun.sleep(delayMs);
        controller.enqueue(bytes.subarray(sent, sent + chunkBytes));
        sent += chunkBytes;
        if (sent >= bytes.length) controller.close();
      },
    }),
    { status: response.status, headers: response.headers },
  );
}
