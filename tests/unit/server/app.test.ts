import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Config, DEFAULTS } from "../../../lib/config/config.ts";
import { type Digest, digestHex, digestOf } from "../../../lib/oci/digest.ts";
import { parseReference } from "../../../lib/oci/reference.ts";
import { Cache } from "../../../lib/pull/cache.ts";
import { pullImage } from "../../../lib/pull/pull.ts";
import { createAdminApp } from "../../../lib/server/app.ts";
import { Metrics } from "../../../lib/server/metrics.ts";
import { CLI } from "../../helpers/cli.ts";
import { CAN_MOUNT, HOST_ARCH as host, RUN_ID as run, useTempDir } from "../../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../../helpers/images.ts";
import { type Listening, listen } from "../../helpers/listen.ts";
import { mountTmpfs } from "../../helpers/mount.ts";
import { type ProxyHandle, startProxy, trickle } from "../../helpers/proxy.ts";
import { startRawServer } from "../../helpers/raw.ts";
import { freePort, type RegistryHandle, sharedRegistry, startRegistry } from "../../helpers/registry.ts";
import { startServe } from "../../helpers/serve.ts";

const TOKEN = "test-admin-token-0123456789";

let registry: RegistryHandle;
let image: SampleImage;
beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `serve-${run}/app`, "1", {
    format: "spec",
    kernelBytes: 300_000,
    initrdBytes: 900_000,
    romBytes: [4000],
  });
});
afterAll(() => registry.stop());

const tmp = useTempDir("serve");

async function adminApp(options: { cacheDir?: string; upstream?: string } = {}): Promise<{
  app: Listening;
  cache: Cache;
  metrics: Metrics;
}> {
  const cacheDir = options.cacheDir ?? join(tmp.path, "cache");
  const config: Config = { ...DEFAULTS, cacheDir };
  const metrics = new Metrics();
  const cache = new Cache({ dir: cacheDir, onEvent: (e) => metrics.record(e), registry: { backoffMs: 5 } });
  const app = createAdminApp({
    config,
    cache,
    metrics,
    token: TOKEN,
    ...(options.upstream !== undefined && { upstream: options.upstream }),
  });
  return { app: await listen(app), cache, metrics };
}

// biome-ignore lint/suspicious/noExplicitAny: each test reads the fields of its own answer
const json = (response: Response): Promise<any> => response.json();
const auth = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
const post = (body: unknown, headers: Record<string, string> = auth) => ({
  method: "POST",
  headers,
  body: JSON.stringify(body),
});

describe("the admin API", () => {
  test("GET /healthz and /readyz", async () => {
    const { app } = await adminApp();
    expect(await json(await app.request("/healthz"))).toEqual({ status: "ok" });
    expect((await app.request("/readyz")).status).toBe(200);
  });

  test.skipIf(!CAN_MOUNT)("/readyz is 503 when the cache cannot be written (mounts a tmpfs: root only)", async () => {
    const fs = mountTmpfs(1024 * 1024);
    try {
      new Cache({ dir: fs.dir });
      fs.readOnly();
      const { app } = await adminApp({ cacheDir: fs.dir });
      const response = await app.request("/readyz");
      expect(response.status).toBe(503);
      expect((await json(response)).reason).toContain("read-only");
    } finally {
      fs.unmount();
    }
  });

  test("mutating routes need the bearer token: none, wrong, right", async () => {
    const { app } = await adminApp();
    const none = await app.request("/v1/gc", post({ dryRun: true }, { "Content-Type": "application/json" }));
    expect(none.status).toBe(401);
    expect(await json(none)).toMatchObject({ code: "EAUTH" });
    const wrong = await app.request("/v1/gc", post({ dryRun: true }, { ...auth, Authorization: "Bearer wrong-token" }));
    expect(wrong.status).toBe(401);
    const right = await app.request("/v1/gc", post({ dryRun: true }));
    expect(right.status).toBe(200);
    expect((await json(right)).dryRun).toBe(true);
    for (const [path, method] of [
      ["/v1/pull", "POST"],
      [`/v1/refs/${encodeURIComponent(image.ref)}`, "DELETE"],
      [`/v1/blobs/sha256:${"a".repeat(64)}`, "DELETE"],
    ] as const) {
      expect((await app.request(path, { method })).status).toBe(401);
    }
  });

  test("POST /v1/pull fills the cache; stats, refs, blobs and metrics show it", async () => {
    const { app } = await adminApp();
    const pulled = await app.request("/v1/pull", post({ ref: image.ref }));
    expect(pulled.status).toBe(200);
    const result = await json(pulled);
    expect(result.digest).toBe(image.indexDigest);
    expect(result.files.map((f: { name: string }) => f.name)).toEqual(["kernel", "initrd", "rom0"]);
    expect(readFileSync(result.files[1].path)).toEqual(Buffer.from(image.manifests[host].files.initrd));

    const stats = await json(await app.request("/v1/stats"));
    expect(stats.referenceCount).toBe(1);
    expect(stats.blobCount).toBe(readdirSync(join(tmp.path, "cache", "blobs", "sha256")).length);
    const refs = await json(await app.request("/v1/refs"));
    expect(refs.map((r: { reference: string }) => r.reference)).toEqual([image.ref]);

    const first = await json(await app.request("/v1/blobs?limit=2"));
    expect(first.blobs).toHaveLength(2);
    const second = await json(await app.request(`/v1/blobs?limit=100&cursor=${first.next}`));
    expect(second.next).toBeUndefined();
    const all = [...first.blobs, ...second.blobs].map((b: { digest: string }) => b.digest);
    expect(all).toEqual([...all].sort());
    expect(all.length).toBe(stats.blobCount);

    const metrics = await (await app.request("/metrics")).text();
    expect(metrics).toContain("# TYPE ocicache_misses_total counter");
    expect(metrics).toMatch(/ocicache_misses_total [1-9]/);
    expect(metrics).toContain(`ocicache_blobs ${stats.blobCount}`);
    expect(metrics).toContain("ocicache_references 1");
  });

  test("DELETE /v1/refs/:ref and /v1/blobs/:digest remove what they name", async () => {
    const { app, cache } = await adminApp();
    await pullImage(cache, parseReference(image.ref));
    const rom = image.manifests[host].layers[1]!.digest as Digest;
    const blob = await app.request(`/v1/blobs/${rom}`, { method: "DELETE", headers: auth });
    expect(blob.status).toBe(200);
    expect(cache.store.stat(rom)).toBeUndefined();
    const ref = await app.request(`/v1/refs/${encodeURIComponent(image.ref)}`, { method: "DELETE", headers: auth });
    expect(ref.status).toBe(200);
    expect((await json(ref)).removed.map((r: { reference: string }) => r.reference)).toEqual([image.ref]);
    expect(
      (await app.request(`/v1/refs/${encodeURIComponent(image.ref)}`, { method: "DELETE", headers: auth })).status,
    ).toBe(404);
  });

  test.each([
    ["/v1/pull", { reference: "x" }, '"reference": unknown field'],
    ["/v1/pull", {}, '"ref"'],
    ["/v1/pull", { ref: 42 }, '"ref"'],
    ["/v1/pull", { ref: "UPPER/case:1" }, "bad repository component"],
    ["/v1/gc", { maxAge: "soon" }, '"maxAge"'],
    ["/v1/gc", { maxSize: "lots" }, '"maxSize"'],
    ["/v1/gc", { dryRun: "yes" }, '"dryRun"'],
  ])("POST %s %j is a 400 naming the field", async (path, body, part) => {
    const { app } = await adminApp();
    const response = await app.request(path, post(body));
    expect(response.status).toBe(400);
    const error = await json(response);
    expect(error.code).toBe("EUSAGE");
    expect(error.message).toContain(part);
  });

  test.each(["/v1/gc", "/v1/pull"])(
    "POST %s with curl's form content type is a 415, its body never replaced by defaults that delete",
    async (path) => {
      const { app, cache } = await adminApp();
      await pullImage(cache, parseReference(image.ref));
      const before = readdirSync(join(tmp.path, "cache", "blobs", "sha256")).length;
      const body = path === "/v1/gc" ? '{"dryRun":true,"maxAge":"0s"}' : `{"ref":"${image.ref}"}`;
      const form = { ...auth, "Content-Type": "application/x-www-form-urlencoded" };
      const response = await app.request(path, { method: "POST", headers: form, body });
      expect(response.status).toBe(415);
      expect(await json(response)).toMatchObject({ code: "EUSAGE" });
      expect((await json(await app.request(path, { method: "POST", headers: form, body }))).message).toContain(
        "application/json",
      );
      expect(readdirSync(join(tmp.path, "cache", "blobs", "sha256")).length).toBe(before);
    },
  );

  test("a body over 16 KiB is a 413; no body at all is every field at its default", async () => {
    const { app } = await adminApp();
    const big = await app.request("/v1/gc", post({ maxAge: "x".repeat(20_000) }));
    expect(big.status).toBe(413);
    const empty = await app.request("/v1/gc", { method: "POST", headers: { Authorization: auth.Authorization } });
    expect(empty.status).toBe(200);
    expect((await json(empty)).dryRun).toBe(false);
    const pull = await app.request("/v1/pull", { method: "POST", headers: { Authorization: auth.Authorization } });
    expect(pull.status).toBe(400);
    expect((await json(pull)).message).toContain('"ref"');
  });

  test("a bad query, a bad digest, a non-JSON body and an unknown route are JSON errors", async () => {
    const { app } = await adminApp();
    expect((await app.request("/v1/blobs?limit=0")).status).toBe(400);
    expect((await json(await app.request("/v1/blobs?cursor=../../etc"))).message).toContain('"cursor"');
    expect((await app.request("/v1/blobs/sha256:../../x", { method: "DELETE", headers: auth })).status).toBe(400);
    expect((await app.request("/v1/gc", { method: "POST", headers: auth, body: "{" })).status).toBe(400);
    const missing = await app.request("/v1/nothing");
    expect(missing.status).toBe(404);
    expect(await json(missing)).toMatchObject({ code: "ENOTFOUND" });
  });
});

describe("the registry mirror (/v2/)", () => {
  test("serves manifests with their headers, and refuses writes with 405", async () => {
    const { app } = await adminApp({ upstream: registry.host });
    const head = await app.request(`/v2/serve-${run}/app/manifests/1`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("docker-content-digest")).toBe(image.indexDigest);
    expect(head.headers.get("content-type")).toBe("application/vnd.oci.image.index.v1+json");
    const get = await app.request(`/v2/serve-${run}/app/manifests/${image.indexDigest}`);
    expect(digestOf(new Uint8Array(await get.arrayBuffer())) as string).toBe(image.indexDigest);
    const put = await app.request(`/v2/serve-${run}/app/manifests/1`, { method: "PUT", body: "{}" });
    expect(put.status).toBe(405);
    expect((await json(put)).errors[0].code).toBe("UNSUPPORTED");
    expect((await app.request(`/v2/serve-${run}/app/manifests/nope`)).status).toBe(404);
  });

  test("a HEAD of a missing blob answers its size from upstream without downloading it", async () => {
    const layer = image.manifests[host].layers[0]!;
    const proxy = startProxy(registry.url);
    try {
      const { app, cache } = await adminApp({ upstream: proxy.host });
      const head = await app.request(`/v2/serve-${run}/app/blobs/${layer.digest}`, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers.get("content-length")).toBe(String(layer.size));
      expect(proxy.count(`/blobs/${layer.digest}`, "GET")).toBe(0);
      expect(cache.store.stat(layer.digest as Digest)).toBeUndefined();
    } finally {
      await proxy.stop();
    }
  });

  test("a Range request returns the right bytes (206), an unsatisfiable one 416", async () => {
    const { app } = await adminApp({ upstream: registry.host });
    const layer = image.manifests[host].layers[0]!;
    const bytes = new Uint8Array(await (await app.request(`/v2/serve-${run}/app/blobs/${layer.digest}`)).arrayBuffer());
    expect(digestOf(bytes) as string).toBe(layer.digest);
    const ranged = await app.request(`/v2/serve-${run}/app/blobs/${layer.digest}`, {
      headers: { Range: "bytes=1000-1999" },
    });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 1000-1999/${layer.size}`);
    expect(new Uint8Array(await ranged.arrayBuffer())).toEqual(bytes.subarray(1000, 2000));
    const tail = await app.request(`/v2/serve-${run}/app/blobs/${layer.digest}`, { headers: { Range: "bytes=-10" } });
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 10));
    expect(
      (await app.request(`/v2/serve-${run}/app/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } }))
        .status,
    ).toBe(416);
  });

  test("two clients asking for one missing blob cause one upstream fetch", async () => {
    const layer = image.manifests[host].layers[0]!;
    const proxy = slowProxy(layer.digest);
    try {
      const { app, metrics } = await adminApp({ upstream: proxy.host });
      const url = `/v2/serve-${run}/app/blobs/${layer.digest}`;
      const [a, b] = await Promise.all([app.request(url), app.request(url)]);
      const [x, y] = await Promise.all([a.arrayBuffer(), b.arrayBuffer()]);
      expect(digestOf(new Uint8Array(x)) as string).toBe(layer.digest);
      expect(digestOf(new Uint8Array(y)) as string).toBe(layer.digest);
      expect(proxy.count(`/blobs/${layer.digest}`, "GET")).toBe(1);
      expect(metrics.misses).toBe(1);
    } finally {
      await proxy.stop();
    }
  });

  test("a GET miss costs the upstream one GET and answers with Content-Length; a HEAD miss one HEAD", async () => {
    const [kernel, initrd] = image.manifests[host].layers;
    const upstream = startRawServer(registry.url, () => false);
    try {
      const { app } = await adminApp({ upstream: upstream.host });
      const blobRequests = (digest: string) =>
        upstream.requests.filter((r) => r.path.includes(`/blobs/${digest}`)).map((r) => r.method);
      const responses = await Promise.all(
        [1, 2, 3].map(() => app.request(`/v2/serve-${run}/app/blobs/${kernel!.digest}`)),
      );
      expect(responses.map((r) => r.headers.get("content-length"))).toEqual(Array(3).fill(String(kernel!.size)));
      const bodies = await Promise.all(
        responses.map(async (r) => digestOf(new Uint8Array(await r.arrayBuffer())) as string),
      );
      expect(bodies).toEqual(Array(3).fill(kernel!.digest));
      expect(blobRequests(kernel!.digest)).toEqual(["GET"]);
      const head = await app.request(`/v2/serve-${run}/app/blobs/${initrd!.digest}`, { method: "HEAD" });
      expect(head.headers.get("content-length")).toBe(String(initrd!.size));
      expect(blobRequests(initrd!.digest)).toEqual(["HEAD"]);
    } finally {
      upstream.stop();
    }
  });
});

describe("the mirror and slow or vanishing clients", () => {
  test("a slow client gets every byte; one that leaves mid-blob does not stop the download", async () => {
    const layer = image.manifests[host].layers[0]!;
    const { app } = await adminApp({ upstream: registry.host });
    const slow = await app.request(`/v2/serve-${run}/app/blobs/${layer.digest}`);
    const chunks: Uint8Array[] = [];
    for await (const chunk of slow.body!) {
      chunks.push(chunk);
      await Bun.sleep(2);
    }
    expect(digestOf(Buffer.concat(chunks)) as string).toBe(layer.digest);

    const { app: other, cache: otherCache } = await adminApp({
      cacheDir: join(tmp.path, "other"),
      upstream: registry.host,
    });
    const leaving = await other.request(`/v2/serve-${run}/app/blobs/${layer.digest}`);
    const reader = leaving.body!.getReader();
    await reader.read();
    await reader.cancel();
    const deadline = Date.now() + 10_000;
    while (otherCache.store.stat(layer.digest as Digest) === undefined && Date.now() < deadline) await Bun.sleep(20);
    expect(digestOf(readFileSync(otherCache.store.blobPath(layer.digest as Digest))) as string).toBe(layer.digest);
  });
});

function slowProxy(digest: string, delayMs = 10): ProxyHandle {
  return startProxy(registry.url, async (request, forward) => {
    const response = await forward();
    if (request.method !== "GET" || !request.url.includes(`/blobs/${digest}`)) return response;
    return trickle(response, 32 * 1024, delayMs);
  });
}

describe("/metrics", () => {
  test("follows Prometheus conventions, times requests by route class, counts upstream errors by kind", async () => {
    const { app } = await adminApp({ upstream: registry.host });
    expect((await app.request(`/v2/serve-${run}/app/manifests/1`)).status).toBe(200);
    expect((await app.request("/healthz")).status).toBe(200);
    const down = await adminApp({ upstream: "127.0.0.1:9" });
    expect((await down.app.request(`/v2/serve-${run}/app/manifests/1`)).status).toBe(503);
    const text = await (await app.request("/metrics")).text();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const);
    expect(types.filter(([name]) => !name.startsWith("ocicache_"))).toEqual([]);
    expect(types.filter(([name, type]) => type === "counter" && !name.endsWith("_total"))).toEqual([]);
    const samples = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
    expect(samples.filter((line) => !line.startsWith("ocicache_"))).toEqual([]);
    expect(text).toContain('ocicache_http_request_duration_seconds_count{route="v2_manifest"} 1');
    expect(text).toContain('ocicache_http_request_duration_seconds_bucket{route="health",le="+Inf"} 1');
    const downText = await (await down.app.request("/metrics")).text();
    expect(downText).toContain('ocicache_upstream_errors_total{kind="unreachable"} 1');
  });
});

describe("tag lists and the catalog (/v2/<name>/tags/list, /v2/_catalog)", () => {
  const repo = `serve-${run}/tagged`;
  beforeAll(async () => {
    for (const tag of ["1.0", "1.1", "2.0"])
      await pushSampleImage(registry.url, repo, tag, { format: "kraftkit", kernelBytes: 1000 });
  });

  test("lists the upstream's tags in lexical order, n at a time with a Link to the next page", async () => {
    const { app } = await adminApp({ upstream: registry.host });
    const first = await app.request(`/v2/${repo}/tags/list?n=2`);
    expect(await json(first)).toEqual({ name: repo, tags: ["1.0", "1.1"] });
    const link = first.headers.get("link")!;
    expect(link).toBe(`</v2/${repo}/tags/list?n=2&last=1.1>; rel="next"`);
    const second = await app.request(/<([^>]+)>/.exec(link)![1]!);
    expect(await json(second)).toEqual({ name: repo, tags: ["2.0"] });
    expect(second.headers.get("link")).toBeNull();
    expect((await app.request(`/v2/serve-${run}/nothing/tags/list`)).status).toBe(404);
  });

  test("with the upstream down: the tags it listed last, else the tags the cache holds; the catalog", async () => {
    const upstream = startProxy(registry.url);
    const { app } = await adminApp({ upstream: upstream.host });
    expect((await app.request(`/v2/${repo}/manifests/1.1`)).status).toBe(200);
    expect((await json(await app.request(`/v2/${repo}/tags/list`))).tags).toEqual(["1.0", "1.1", "2.0"]);
    await upstream.stop();
    expect((await json(await app.request(`/v2/${repo}/tags/list`))).tags).toEqual(["1.0", "1.1", "2.0"]);
    const restarted = (await adminApp({ upstream: upstream.host })).app;
    expect((await json(await restarted.request(`/v2/${repo}/tags/list`))).tags).toEqual(["1.1"]);
    expect(await json(await restarted.request("/v2/_catalog"))).toEqual({ repositories: [repo] });
  });

  test("skopeo list-tags and inspect work through the mirror", async () => {
    const serve = await startServe(tmp.path, registry.host);
    try {
      const listed = Bun.spawnSync(["skopeo", "list-tags", "--tls-verify=false", `docker://${serve.host}/${repo}`]);
      expect(listed.exitCode).toBe(0);
      expect(JSON.parse(listed.stdout.toString()).Tags).toEqual(["1.0", "1.1", "2.0"]);
      const platform = ["--override-os", "qemu", "--override-arch", host === "amd64" ? "x86_64" : "arm64"];
      const inspect = ["skopeo", ...platform, "inspect", "--tls-verify=false", `docker://${serve.host}/${repo}:1.0`];
      const inspected = Bun.spawnSync(inspect);
      expect(inspected.exitCode).toBe(0);
      expect(JSON.parse(inspected.stdout.toString()).RepoTags).toEqual(["1.0", "1.1", "2.0"]);
    } finally {
      await serve.stop();
    }
  });
});

describe("ocicache serve (the process)", () => {
  async function serve(args: string[], env: Record<string, string> = {}) {
    const proc = Bun.spawn(["bun", CLI, "serve", ...args], {
      env: { ...process.env, OCICACHE_DIR: join(tmp.path, "cache"), XDG_CONFIG_HOME: join(tmp.path, "config"), ...env },
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = proc.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const line = new TextDecoder().decode(value ?? new Uint8Array());
    const url = /listening on (http:\/\/\S+?)[,\s]/.exec(line)?.[1];
    return { proc, url, line };
  }

  test("refuses to listen on a non-loopback address without a token", async () => {
    const proc = Bun.spawn(["bun", CLI, "serve", "--listen", "0.0.0.0:0"], {
      env: { ...process.env, OCICACHE_DIR: join(tmp.path, "cache"), OCICACHE_ADMIN_TOKEN: "" },
      stderr: "pipe",
    });
    expect(await proc.exited).toBe(2);
    expect(await new Response(proc.stderr).text()).toContain("without an admin token");
  });

  test("writes a generated token to a file only the owner can read, and never prints it", async () => {
    const { proc, line } = await serve(["--listen", `127.0.0.1:${freePort()}`], { OCICACHE_ADMIN_TOKEN: "" });
    try {
      const file = join(tmp.path, "config", "ocicache", "admin-token");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const token = readFileSync(file, "utf8").trim();
      expect(token).toMatch(/^[0-9a-f]{64}$/);
      expect(line).not.toContain(token);
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
  });

  test("skopeo copies through the mirror, then again with the registry stopped", async () => {
    const origin = await startRegistry();
    const pushed = await pushSampleImage(origin.url, "mirror/app", "2", { format: "spec", romBytes: [1500] });
    const { proc, url } = await serve(["--listen", `127.0.0.1:${freePort()}`, "--upstream", origin.host], {
      OCICACHE_ADMIN_TOKEN: TOKEN,
    });
    try {
      const mirror = new URL(url!).host;
      const copy = (out: string) =>
        Bun.spawnSync(["skopeo", "copy", "--src-tls-verify=false", `docker://${mirror}/mirror/app:2`, `dir:${out}`], {
          stderr: "pipe",
        });
      const first = copy(join(tmp.path, "first"));
      expect(first.exitCode).toBe(0);
      for (const layer of pushed.manifests[host].layers) {
        expect(digestOf(readFileSync(join(tmp.path, "first", digestHex(layer.digest as Digest)))) as string).toBe(
          layer.digest,
        );
      }
      await origin.stop();
      const second = copy(join(tmp.path, "second"));
      expect(second.exitCode).toBe(0);
      expect(readFileSync(join(tmp.path, "second", "manifest.json"))).toEqual(
        readFileSync(join(tmp.path, "first", "manifest.json")),
      );
      for (const layer of pushed.manifests[host].layers) {
        expect(readFileSync(join(tmp.path, "second", digestHex(layer.digest as Digest)))).toEqual(
          readFileSync(join(tmp.path, "first", digestHex(layer.digest as Digest))),
        );
      }
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
      await origin.stop().catch(() => {});
    }
  });

  test("SIGTERM with a download in flight finishes it, exits 0, and leaves no partial blob", async () => {
    const layer = image.manifests[host].layers[0]!;
    const proxy = slowProxy(layer.digest, 20);
    const { proc, url } = await serve(["--listen", `127.0.0.1:${freePort()}`, "--upstream", proxy.host], {
      OCICACHE_ADMIN_TOKEN: TOKEN,
    });
    try {
      const response = await fetch(`${url}/v2/serve-${run}/app/blobs/${layer.digest}`);
      const reader = response.body!.getReader();
      await reader.read();
      proc.kill("SIGTERM");
      let received = 0;
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (done) break;
        received += value!.byteLength;
      }
      expect(await proc.exited).toBe(0);
      const blob = join(tmp.path, "cache", "blobs", "sha256", digestHex(layer.digest as Digest));
      if (existsSync(blob)) expect(digestOf(readFileSync(blob)) as string).toBe(layer.digest);
      expect(received).toBeGreaterThan(0);
      const verify = Bun.spawnSync(["bun", CLI, "verify", "--json"], {
        env: { ...process.env, OCICACHE_DIR: join(tmp.path, "cache") },
      });
      expect(JSON.parse(verify.stdout.toString()).corrupt).toEqual([]);
    } finally {
      proc.kill("SIGKILL");
      await proxy.stop();
    }
  });

  test("SIGKILL of the server with a download in flight: the next run is consistent and serves the blob", async () => {
    const layer = image.manifests[host].layers[0]!;
    const proxy = slowProxy(layer.digest, 20);
    const port = freePort();
    const first = await serve(["--listen", `127.0.0.1:${port}`, "--upstream", proxy.host], {
      OCICACHE_ADMIN_TOKEN: TOKEN,
    });
    try {
      const response = await fetch(`${first.url}/v2/serve-${run}/app/blobs/${layer.digest}`);
      const reader = response.body!.getReader();
      await reader.read();
      first.proc.kill("SIGKILL");
      await first.proc.exited;
      await reader.read().catch(() => undefined);
      const blob = join(tmp.path, "cache", "blobs", "sha256", digestHex(layer.digest as Digest));
      expect(existsSync(blob)).toBe(false);
      const second = await serve(["--listen", `127.0.0.1:${freePort()}`, "--upstream", registry.host], {
        OCICACHE_ADMIN_TOKEN: TOKEN,
      });
      try {
        const again = new Uint8Array(
          await (await fetch(`${second.url}/v2/serve-${run}/app/blobs/${layer.digest}`)).arrayBuffer(),
        );
        expect(digestOf(again) as string).toBe(layer.digest);
        expect(digestOf(readFileSync(blob)) as string).toBe(layer.digest);
      } finally {
        second.proc.kill("SIGTERM");
        expect(await second.proc.exited).toBe(0);
      }
      const verify = Bun.spawnSync(["bun", CLI, "verify", "--json"], {
        env: { ...process.env, OCICACHE_DIR: join(tmp.path, "cache") },
      });
      expect(JSON.parse(verify.stdout.toString())).toMatchObject({ corrupt: [], missing: [] });
    } finally {
      first.proc.kill("SIGKILL");
      await proxy.stop();
    }
  });
});
