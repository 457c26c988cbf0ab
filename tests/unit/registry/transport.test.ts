import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { IntegrityError, RegistryError } from "../../../lib/errors.ts";
import { readBody, readBounded } from "../../../lib/registry/body.ts";
import { isSameOrigin, sendRequest } from "../../../lib/registry/transport.ts";

/** A body that sends `chunk` every `everyMs`, `times` times (forever when undefined). */
function dripping(chunk: string, everyMs: number, times?: number): Response {
  let sent = 0;
  return new Response(
    new ReadableStream({
      async pull(controller) {
        await Bun.sleep(everyMs);
        controller.enqueue(new TextEncoder().encode(chunk));
        if (times !== undefined && ++sent >= times) controller.close();
      },
    }),
  );
}

async function drain(response: Response, limits: Parameters<typeof readBody>[1]): Promise<unknown> {
  try {
    let bytes = 0;
    for await (const chunk of readBody(response, limits, "a test body")) bytes += chunk.byteLength;
    return bytes;
  } catch (error) {
    return error;
  }
}

describe("readBody()", () => {
  test("a body that sends nothing for the idle timeout fails with a timeout", async () => {
    const error = await drain(dripping("x", 300), { idleTimeoutMs: 100 });
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).kind).toBe("timeout");
    expect((error as RegistryError).message).toContain("nothing received for 100ms");
  });

  test("a body that keeps trickling fails at its deadline", async () => {
    const error = await drain(dripping("x", 20), { idleTimeoutMs: 1000, deadlineMs: 150 });
    expect((error as RegistryError).message).toContain("not complete within 150ms");
  });

  test("a body slower than the low-speed limit fails; a fast one passes", async () => {
    const slow = await drain(dripping("x", 20), {
      idleTimeoutMs: 1000,
      lowSpeed: { bytesPerSecond: 1000, windowMs: 200 },
    });
    expect((slow as RegistryError).message).toContain("slower than 1000 B/s for 200ms");
    const fast = await drain(dripping("x".repeat(1000), 10, 30), {
      idleTimeoutMs: 1000,
      lowSpeed: { bytesPerSecond: 1000, windowMs: 100 },
    });
    expect(fast).toBe(30_000);
  });

  test("a body that errors midway is a dropped connection", async () => {
    let sent = false;
    const body = new ReadableStream({
      pull(controller) {
        if (sent) controller.error(new Error("reset"));
        sent = true;
        controller.enqueue(new Uint8Array(10));
      },
    });
    const error = await drain(new Response(body), { idleTimeoutMs: 1000 });
    expect((error as RegistryError).kind).toBe("unreachable");
    expect((error as RegistryError).message).toContain("the connection dropped after 10 bytes");
  });
});

describe("readBounded()", () => {
  test("refuses a body over its limit, by header or by count", async () => {
    const declared = new Response("x".repeat(20), { headers: { "content-length": "20" } });
    expect(await readBounded(declared, 10, "a manifest", { idleTimeoutMs: 1000 }).catch((e) => e)).toBeInstanceOf(
      IntegrityError,
    );
    const counted = dripping("x".repeat(6), 1, 3);
    expect(await readBounded(counted, 10, "a manifest", { idleTimeoutMs: 1000 }).catch((e) => e)).toBeInstanceOf(
      IntegrityError,
    );
    expect(
      new TextDecoder().decode(await readBounded(new Response("hello"), 10, "a manifest", { idleTimeoutMs: 1000 })),
    ).toBe("hello");
  });
});

describe("sendRequest()", () => {
  let origin: Server<undefined>;
  let other: Server<undefined>;
  const seen: Array<{ server: string; authorization: string | null }> = [];
  beforeAll(() => {
    other = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (request) => {
        seen.push({ server: "other", authorization: request.headers.get("authorization") });
        return new Response("from other");
      },
    });
    origin = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (request) => {
        seen.push({ server: "origin", authorization: request.headers.get("authorization") });
        const path = new URL(request.url).pathname;
        if (path === "/away")
          return new Response(null, { status: 307, headers: { Location: `http://127.0.0.1:${other.port}/there` } });
        if (path === "/here") return new Response(null, { status: 302, headers: { Location: "/final" } });
        return new Response("from origin");
      },
    });
  });
  afterAll(() => {
    origin.stop(true);
    other.stop(true);
  });

  test("a refused connection is not retried; a connection closed without an answer is", async () => {
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
    const port = closed.port;
    closed.stop(true);
    const calls: string[] = [];
    const counting = Object.assign(
      (input: string | URL | Request, init?: RequestInit) => {
        calls.push(String(input));
        return fetch(input, init);
      },
      { preconnect: fetch.preconnect },
    );
    const request = (host: string) => ({ url: `http://${host}/v2/`, method: "GET" as const, headers: {}, host });
    const refused = await sendRequest(request(`127.0.0.1:${port}`), { fetch: counting, backoffMs: 1 }).catch(
      (e: unknown) => e,
    );
    expect(refused).toMatchObject({ kind: "unreachable" });
    expect((refused as Error).message).toContain("connection refused");
    expect(calls).toHaveLength(1);

    const hangUp = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket) {
          socket.end();
        },
      },
    });
    calls.length = 0;
    const dropped = await sendRequest(request(`127.0.0.1:${hangUp.port}`), { fetch: counting, backoffMs: 1 }).catch(
      (e: unknown) => e,
    );
    hangUp.stop(true);
    expect(dropped).toMatchObject({ kind: "unreachable" });
    expect(calls).toHaveLength(4);
  });

  test("follows a redirect to another host without Authorization, and says where the answer came from", async () => {
    seen.length = 0;
    const request = {
      url: `http://127.0.0.1:${origin.port}/away`,
      method: "GET" as const,
      headers: { Authorization: "Basic secret" },
      host: "origin",
    };
    const { response, url } = await sendRequest(request);
    expect(await response.text()).toBe("from other");
    expect(isSameOrigin(url, request.url)).toBe(false);
    expect(seen).toEqual([
      { server: "origin", authorization: "Basic secret" },
      { server: "other", authorization: null },
    ]);
  });

  test("keeps Authorization on a redirect within the same origin", async () => {
    seen.length = 0;
    const request = {
      url: `http://127.0.0.1:${origin.port}/here`,
      method: "GET" as const,
      headers: { Authorization: "Basic secret" },
      host: "origin",
    };
    const { url } = await sendRequest(request);
    expect(isSameOrigin(url, request.url)).toBe(true);
    expect(seen.map((s) => s.authorization)).toEqual(["Basic secret", "Basic secret"]);
  });
});
