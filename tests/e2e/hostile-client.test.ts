import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type Config, DEFAULTS } from "../../lib/config/config.ts";
import { type Digest, digestHex, digestOf, hashFile, parseDigest } from "../../lib/oci/digest.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { Cache } from "../../lib/pull/cache.ts";
import { pullImage } from "../../lib/pull/pull.ts";
import type { RegistryClientOptions } from "../../lib/registry/client.ts";
import { createAdminApp } from "../../lib/server/app.ts";
import { readHtpasswd } from "../../lib/server/htpasswd.ts";
import { Metrics } from "../../lib/server/metrics.ts";
import { CLI } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type Listening, listen } from "../helpers/listen.ts";
import { startProxy, trickle } from "../helpers/proxy.ts";
import { send, startRawServer } from "../helpers/raw.ts";
import { freePort, type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const TOKEN = "test-admin-token-0123456789";
const repo = `hostile-client-${run}/app`;

let registry: RegistryHandle;
let image: SampleImage;
let kernel: Digest;

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, repo, "1", {
    format: "kraftkit",
    kernelBytes: 6 * 1024 * 1024,
    initrdBytes: 300_000,
  });
  kernel = parseDigest(image.manifests[host].layers[0]!.digest);
});
afterAll(() => registry.stop());

const tmp = useTempDir("hostile-client");

interface AppOptions {
  upstream?: string;
  registry?: RegistryClientOptions;
  allowedHosts?: string[];
  htpasswd?: string;
  config?: Partial<Config>;
  cacheDir?: string;
}

async function mirrorApp(options: AppOptions = {}): Promise<{ app: Listening; cache: Cache; metrics: Metrics }> {
  const cacheDir = options.cacheDir ?? join(tmp.path, "cache");
  const config: Config = { ...DEFAULTS, cacheDir, ...options.config };
  const metrics = new Metrics();
  const cache = new Cache({
    dir: cacheDir,
    onEvent: (e) => metrics.record(e),
    registry: { backoffMs: 5, ...options.registry },
  });
  const app = createAdminApp({
    config,
    cache,
    metrics,
    token: TOKEN,
    upstream: options.upstream ?? registry.host,
    ...(options.allowedHosts !== undefined && { allowedHosts: options.allowedHosts }),
    ...(options.htpasswd !== undefined && { htpasswd: readHtpasswd(options.htpasswd) }),
  });
  return { app: await listen(app), cache, metrics };
}

const indexEntries = () => {
  const path = join(tmp.path, "cache", "index.json");
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")).manifests.length : 0;
};

describe("hostile requests to the mirror", () => {
  test("a layer asked for as a manifest is 404, and is neither read into memory nor recorded", async () => {
    const { app, cache } = await mirrorApp();
    await pullImage(cache, parseReference(image.ref));
    const before = indexEntries();
    for (let i = 0; i < 4; i++) {
      const response = await app.request(`/v2/a/b/manifests/${kernel}`);
      expect(response.status).toBe(404);
      expect(((await response.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).toBe("MANIFEST_UNKNOWN");
    }
    const config = image.manifests[host].layers[1]!.digest;
    expect((await app.request(`/v2/${repo}/manifests/${config}`)).status).toBe(404);
    expect(indexEntries()).toBe(before);
  });

  test("manifest requests by digest under junk names record nothing in index.json", async () => {
    const { app } = await mirrorApp();
    expect((await app.request(`/v2/${repo}/manifests/1`)).status).toBe(200);
    expect(indexEntries()).toBe(1);
    for (let i = 0; i < 30; i++) {
      const response = await app.request(`/v2/junk${i}/n${i}/manifests/${image.indexDigest}`);
      expect([200, 404]).toContain(response.status);
    }
    expect(indexEntries()).toBe(1);
  });

  test("an upstream named without a dot or port is the registry, not a Docker Hub namespace", async () => {
    const { app } = await mirrorApp({
      upstream: "myregistry",
      registry: { registries: { myregistry: { insecure: true, mirrors: [{ host: registry.host }] } } },
    });
    const response = await app.request(`/v2/${repo}/manifests/1`);
    expect(response.status).toBe(200);
    expect(response.headers.get("docker-content-digest")).toBe(image.indexDigest);
    expect(
      JSON.parse(readFileSync(join(tmp.path, "cache", "index.json"), "utf8")).manifests[0].annotations[
        "org.opencontainers.image.ref.name"
      ],
    ).toBe(`myregistry/${repo}:1`);
  });

  test("a blob damaged on disk is found before it is served: dropped, counted, fetched again", async () => {
    const upstream = startProxy(registry.url);
    try {
      const { app, cache } = await mirrorApp({ upstream: upstream.host });
      await pullImage(cache, parseReference(`${upstream.host}/${repo}:1`));
      const blob = join(tmp.path, "cache", "blobs", "sha256", digestHex(kernel));
      const first = await app.request(`/v2/${repo}/blobs/${kernel}`);
      expect(digestOf(new Uint8Array(await first.arrayBuffer()))).toBe(kernel);
      const fd = openSync(blob, "r+");
      writeSync(fd, new Uint8Array([0xde, 0xad, 0xbe, 0xef]), 0, 4, 1000);
      closeSync(fd);
      const gets = upstream.count(`/blobs/${kernel}`, "GET");
      const served = await app.request(`/v2/${repo}/blobs/${kernel}`);
      expect(digestOf(new Uint8Array(await served.arrayBuffer()))).toBe(kernel);
      expect(upstream.count(`/blobs/${kernel}`, "GET")).toBe(gets + 1);
      expect(hashFile(blob).digest).toBe(kernel);
      expect(await (await app.request("/metrics")).text()).toContain("ocicache_damaged_blobs_dropped_total 1");
    } finally {
      await upstream.stop();
    }
  });

  test("a client that never reads holds nobody back: another gets every byte, one upstream GET", async () => {
    const upstream = startProxy(registry.url);
    try {
      const { app } = await mirrorApp({ upstream: upstream.host });
      const stuck = await app.request(`/v2/${repo}/blobs/${kernel}`);
      expect(stuck.status).toBe(200);
      const other = await app.request(`/v2/${repo}/blobs/${kernel}`);
      const bytes = await Promise.race([other.arrayBuffer(), Bun.sleep(20_000).then(() => undefined)]);
      expect(bytes).toBeDefined();
      expect(digestOf(new Uint8Array(bytes!))).toBe(kernel);
      expect(upstream.count(`/blobs/${kernel}`, "GET")).toBe(1);
      await stuck.body?.cancel();
    } finally {
      await upstream.stop();
    }
  });

  test("past maxConnections a miss is a 429 with Retry-After; past maxConcurrentDownloads misses queue", async () => {
    const slow = startProxy(registry.url, async (request, forward) =>
      request.method === "GET" && new URL(request.url).pathname.includes("/blobs/")
        ? trickle(await forward(), 64 * 1024, 20)
        : forward(),
    );
    try {
      const { app, metrics } = await mirrorApp({
        upstream: slow.host,
        config: { maxConnections: 1, maxConcurrentDownloads: 1 },
      });
      const [kernelLayer, initrdLayer] = image.manifests[host].layers;
      const first = await app.request(`/v2/${repo}/blobs/${kernelLayer!.digest}`);
      expect(first.status).toBe(200);
      const refused = await app.request(`/v2/${repo}/blobs/${initrdLayer!.digest}`);
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(metrics.refusedTotal).toBe(1);
      expect(digestOf(new Uint8Array(await first.arrayBuffer())) as string).toBe(kernelLayer!.digest);
      const { app: queued, metrics: counted } = await mirrorApp({
        upstream: slow.host,
        config: { maxConcurrentDownloads: 1 },
        cacheDir: join(tmp.path, "second"),
      });
      const responses = await Promise.all(
        image.manifests[host].layers.map((l) => queued.request(`/v2/${repo}/blobs/${l.digest}`)),
      );
      const seen = [counted.downloadsInFlight, counted.downloadsQueued];
      const bodies = await Promise.all(
        responses.map(async (r) => digestOf(new Uint8Array(await r.arrayBuffer())) as string),
      );
      expect(bodies).toEqual(image.manifests[host].layers.map((l) => l.digest));
      expect(seen).toEqual([1, 1]);
      const counters = () => [
        counted.downloadsInFlight,
        counted.downloadsQueued,
        counted.blobStreams,
        counted.bufferedBytes,
      ];
      // A download ends after its last byte went out: it still commits the blob and records its use.
      for (let waited = 0; counters().some((n) => n !== 0) && waited < 2_000; waited += 10) await Bun.sleep(10);
      expect(counters()).toEqual([0, 0, 0, 0]);
    } finally {
      await slow.stop();
    }
  });

  test("an upstream that stalls a manifest body: 503 from the mirror within the idle timeout", async () => {
    const stalled = startRawServer(registry.url, (request, socket) => {
      if (!request.path.includes("/manifests/")) return false;
      send(
        socket,
        new TextEncoder().encode(
          "HTTP/1.1 200 X\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: 1000\r\n\r\n{",
        ),
      );
      return true;
    });
    try {
      const { app } = await mirrorApp({ upstream: stalled.host, registry: { idleTimeoutMs: 1000 } });
      const started = Date.now();
      const response = await app.request(`/v2/${repo}/manifests/1`);
      expect(response.status).toBe(503);
      expect(JSON.stringify(await response.json())).toContain("nothing received for 1s");
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      stalled.stop();
    }
  });
});

describe("who may talk to serve", () => {
  test("another Host (DNS rebinding) is 421; IP addresses, localhost and allowed names are answered", async () => {
    const { app } = await mirrorApp({ allowedHosts: ["cache.internal"] });
    expect((await app.request("/v1/stats", { headers: { Host: "evil.example:5050" } })).status).toBe(421);
    expect((await app.request(`/v2/${repo}/manifests/1`, { headers: { Host: "evil.example:5050" } })).status).toBe(421);
    expect((await app.request("/v1/stats", { headers: { Host: "attacker.test" } })).status).toBe(421);
    for (const name of ["127.0.0.1:5050", "localhost:5050", "[::1]:5050", "10.1.2.3:5050", "cache.internal:5050"]) {
      expect((await app.request("/v1/stats", { headers: { Host: name } })).status).toBe(200);
    }
  });

  test("a mutating request from a web page on another origin is refused, even with the token", async () => {
    const { app } = await mirrorApp();
    const gc = (origin?: string) =>
      app.request("/v1/gc", {
        method: "POST",
        headers: {
          Authorization: `Bearer ${TOKEN}`,
          "Content-Type": "application/json",
          ...(origin !== undefined && { Origin: origin }),
        },
        body: JSON.stringify({ dryRun: true }),
      });
    expect((await gc("http://evil.example")).status).toBe(403);
    expect((await gc("null")).status).toBe(403);
    expect((await gc("http://127.0.0.1:5050")).status).toBe(200);
    expect((await gc()).status).toBe(200);
  });

  test("with --htpasswd, mirror clients need credentials: none and wrong are 401, right is served", async () => {
    const file = join(tmp.path, "htpasswd");
    const made = Bun.spawnSync(["htpasswd", "-nbB", "fleet", "s3cret"]);
    writeFileSync(file, made.stdout);
    const { app } = await mirrorApp({ htpasswd: file });
    const none = await app.request("/v2/");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toStartWith("Basic ");
    const wrong = await app.request(`/v2/${repo}/manifests/1`, {
      headers: { Authorization: `Basic ${btoa("fleet:nope")}` },
    });
    expect(wrong.status).toBe(401);
    const right = await app.request(`/v2/${repo}/manifests/1`, {
      headers: { Authorization: `Basic ${btoa("fleet:s3cret")}` },
    });
    expect(right.status).toBe(200);
    expect((await app.request("/healthz")).status).toBe(200);
  });

  test("an htpasswd file with a non-bcrypt entry is refused with a clear error", () => {
    const file = join(tmp.path, "htpasswd");
    writeFileSync(file, "fleet:$apr1$abc$defghijklmnopqrstuvwx\n");
    expect(() => readHtpasswd(file)).toThrow("line 1 is not");
  });

  test("serve refuses a mirror on a non-loopback address without --htpasswd or --public-mirror (exit 2)", async () => {
    const env = {
      ...process.env,
      OCICACHE_DIR: join(tmp.path, "cache"),
      XDG_CONFIG_HOME: join(tmp.path, "config"),
      OCICACHE_ADMIN_TOKEN: TOKEN,
    };
    const proc = Bun.spawn(["bun", CLI, "serve", "--listen", `0.0.0.0:${freePort()}`, "--upstream", registry.host], {
      env,
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await proc.exited).toBe(2);
    expect(await new Response(proc.stderr).text()).toContain("give --htpasswd FILE, or --public-mirror");
  });

  test("skopeo through a mirror with --htpasswd: refused without credentials, served with them", async () => {
    const file = join(tmp.path, "htpasswd");
    writeFileSync(file, Bun.spawnSync(["htpasswd", "-nbB", "fleet", "s3cret"]).stdout);
    const port = freePort();
    const env = {
      ...process.env,
      OCICACHE_DIR: join(tmp.path, "cache"),
      XDG_CONFIG_HOME: join(tmp.path, "config"),
      OCICACHE_ADMIN_TOKEN: TOKEN,
    };
    const proc = Bun.spawn(
      ["bun", CLI, "serve", "--listen", `0.0.0.0:${port}`, "--upstream", registry.host, "--htpasswd", file],
      { env, stdout: "pipe", stderr: "pipe" },
    );
    try {
      const reader = proc.stdout.getReader();
      const line = new TextDecoder().decode((await reader.read()).value);
      reader.releaseLock();
      expect(line).toContain(`mirror clients need credentials from ${file}`);
      const inspect = (...creds: string[]) =>
        Bun.spawnSync(
          ["skopeo", "inspect", "--raw", "--tls-verify=false", ...creds, `docker://127.0.0.1:${port}/${repo}:1`],
          { stderr: "pipe" },
        );
      expect(inspect().exitCode).not.toBe(0);
      const served = inspect("--creds", "fleet:s3cret");
      expect(served.exitCode).toBe(0);
      expect(digestOf(served.stdout) as string).toBe(image.indexDigest);
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
  });
});
