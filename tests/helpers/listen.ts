/**
 * An app of `serve` on a real socket, as its clients meet it: the listener `ocicache serve` runs, on a free port of
 * 127.0.0.1, so that what a test sees is what goes over the wire (`app.request` shows what the app said, not what
 * the socket carried).
 *
 * @module
 */

import { afterEach } from "bun:test";
import type { Hono } from "hono";
import { type Listener, listenHttp } from "../../lib/server/listener.ts";

/** A listening app: `request` takes what `app.request` takes, and sends it over the socket. */
export interface Listening {
  url: string;
  request(path: string, init?: RequestInit): Promise<Response>;
}

const servers: Listener[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

/** Serve `app` until the end of the current test. */
export async function listen(app: Hono): Promise<Listening> {
  const server = await listenHttp(app.fetch, { hostname: "127.0.0.1", port: 0 });
  servers.push(server);
  const url = `http://127.0.0.1:${server.port}`;
  return { url, request: (path, init) => fetch(new URL(path, url), init) };
}
