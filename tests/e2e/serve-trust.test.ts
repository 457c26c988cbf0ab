/**
 * `serve` as its clients and the machine's disk meet it, over a real socket: the automatic cleanup runs in the
 * server (finding 11), `--htpasswd` guards every route but health (finding 13), and the status page and odd Host
 * headers are answered safely (finding 15).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushBlob } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const tmp = useTempDir("serve-trust");
let registry: RegistryHandle;
const repo = `serve-trust-${run}/app`;

beforeAll(async () => {
  registry = await sharedRegistry();
});
afterAll(() => registry.stop());

const blobBytes = (cache: string) => {
  const dir = join(cache, "blobs", "sha256");
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
};

function curl(...args: string[]): { status: number; headers: string; body: string } {
  const ran = Bun.spawnSync(["curl", "-s", "-D", "-", ...args], { stdout: "pipe" });
  const text = ran.stdout.toString();
  const [head, ...rest] = text.split("\r\n\r\n");
  return { status: Number(head!.split(" ")[1]), headers: head!.toLowerCase(), body: rest.join("\r\n\r\n") };
}

describe("serve keeps the disk bounded (finding 11)", () => {
  test("with --max-size 1MiB, three 16 MiB blobs pulled through the mirror are cleaned away", async () => {
    const digests: string[] = [];
    for (let i = 0; i < 3; i++) digests.push(await pushBlob(registry.url, repo, randomBytes(16 * 1024 * 1024)));
    const server = await startServe(tmp.path, registry.host, ["--max-size", "1MiB", "--grace", "0"]);
    try {
      for (const digest of digests) {
        const response = await fetch(`http://${server.host}/v2/${repo}/blobs/${digest}`);
        expect(response.status).toBe(200);
        expect((await response.bytes()).byteLength).toBe(16 * 1024 * 1024);
      }
      const cache = join(tmp.path, "cache");
      const deadline = Date.now() + 20_000;
      while (blobBytes(cache) > 1024 * 1024 && Date.now() < deadline) await Bun.sleep(100);
      expect(blobBytes(cache)).toBeLessThanOrEqual(1024 * 1024);
    } finally {
      await server.stop();
    }
  }, 60_000);
});

describe("serve with --htpasswd (finding 13)", () => {
  const start = async () => {
    const htpasswd = join(tmp.path, "htpasswd");
    expect(Bun.spawnSync(["htpasswd", "-Bbc", htpasswd, "ada", "right-password"]).exitCode).toBe(0);
    const server = await startServe(tmp.path, registry.host, ["--htpasswd", htpasswd]);
    const token = readFileSync(join(tmp.path, "config", "ocicache", "admin-token"), "utf8").trim();
    return { server, token };
  };

  test("every route but /healthz and /readyz needs credentials: a user of the file, or the admin token", async () => {
    const { server, token } = await start();
    try {
      const user = `Basic ${btoa("ada:right-password")}`;
      for (const path of ["/", "/v1/refs", "/v1/blobs", "/v1/stats", "/metrics", "/v2/"]) {
        const anonymous = await fetch(`http://${server.host}${path}`);
        expect([path, anonymous.status]).toEqual([path, 401]);
        expect(anonymous.headers.get("www-authenticate")).toBe('Basic realm="ocicache"');
        const wrong = await fetch(`http://${server.host}${path}`, {
          headers: { Authorization: `Basic ${btoa("ada:wrong")}` },
        });
        expect([path, wrong.status]).toEqual([path, 401]);
        expect([
          path,
          (await fetch(`http://${server.host}${path}`, { headers: { Authorization: user } })).status,
        ]).toEqual([path, 200]);
        const admin = await fetch(`http://${server.host}${path}`, { headers: { Authorization: `Bearer ${token}` } });
        expect([path, admin.status]).toEqual([path, 200]);
      }
      for (const path of ["/healthz", "/readyz"])
        expect((await fetch(`http://${server.host}${path}`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  test("a wrong password takes as long for a name that does not exist as for one that does", async () => {
    const { server } = await start();
    const median = async (user: string) => {
      const times: number[] = [];
      for (let i = 0; i < 21; i++) {
        const started = performance.now();
        const response = await fetch(`http://${server.host}/v2/`, {
          headers: { Authorization: `Basic ${btoa(`${user}:wrong-${i}`)}` },
        });
        await response.arrayBuffer();
        times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b)[10]!;
    };
    try {
      const [known, unknown] = [await median("ada"), await median("nobody")];
      expect(unknown).toBeGreaterThan(known * 0.5);
      expect(known).toBeGreaterThan(unknown * 0.5);
    } finally {
      await server.stop();
    }
  });
});

describe("the status page and odd requests (finding 15)", () => {
  test("the page sends a Content-Security-Policy and nosniff; Host: [evil] is a 400, never a 500", async () => {
    const server = await startServe(tmp.path, registry.host);
    try {
      const page = curl(`http://${server.host}/`);
      expect(page.status).toBe(200);
      expect(page.headers).toContain("content-security-policy: default-src 'none'; style-src 'unsafe-inline'");
      expect(page.headers).toContain("x-content-type-options: nosniff");
      expect(curl(`http://${server.host}/v2/`).headers).toContain("x-content-type-options: nosniff");
      for (const host of ["[evil]", "[evil]:80", "a b", "exa mple.com"]) {
        const odd = curl("-H", `Host: ${host}`, `http://${server.host}/`);
        expect([host, odd.status]).toEqual([host, 400]);
        expect(odd.body).not.toContain("Invalid URL");
      }
      expect(curl("-H", "Host: evil.example", `http://${server.host}/`).status).toBe(421);
      // A request line naming an absolute URL (a proxy's form) is no request for this server.
      const absolute = curl("--request-target", "http://evil.example/v1/refs", `http://${server.host}/`);
      expect([absolute.status, absolute.body]).toEqual([
        400,
        '{"code":"EUSAGE","message":"The request target is not a path"}',
      ]);
    } finally {
      await server.stop();
    }
  });
});
