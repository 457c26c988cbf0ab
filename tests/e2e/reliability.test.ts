import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Digest, digestHex, parseDigest } from "../../lib/oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../../lib/oci/limits.ts";
import { Store } from "../../lib/store/store.ts";
import { formatBytes } from "../../lib/units.ts";
import { CLI, runCli } from "../helpers/cli.ts";
import { CAN_MOUNT, HOST_ARCH as host, RUN_ID as run } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { mountTmpfs } from "../helpers/mount.ts";
import { type ProxyHook, startProxy, trickle } from "../helpers/proxy.ts";
import { endAfterFlush, type RawFault, send, startRawServer, writeResponse } from "../helpers/raw.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const KERNEL_BYTES = 600_000;

let registry: RegistryHandle;
let image: SampleImage;
let kernel: Digest;

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `faults-${run}/app`, "1", {
    format: "kraftkit",
    kernelBytes: KERNEL_BYTES,
    initrdBytes: 50_000,
  });
  kernel = parseDigest(image.manifests[host].layers[0]!.digest);
});
afterAll(() => registry.stop());

let dir: string;
let cacheDir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-faults-"));
  cacheDir = join(dir, "cache");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const env = (extra: Record<string, string> = {}) => ({
  ...process.env,
  OCICACHE_DIR: cacheDir,
  XDG_CONFIG_HOME: join(dir, "config"),
  OCICACHE_AUTO_CLEAN_INTERVAL: "0",
  ...extra,
});

const ocicache = (args: string[], extra: Record<string, string> = {}) => runCli(args, env(extra));

const refVia = (serverHost: string) => `${serverHost}/faults-${run}/app:1`;
const out = () => join(dir, "out");

/** The cache is consistent: verify is clean, and every file in blobs/ is what its name says. */
async function expectConsistent(): Promise<void> {
  if (!existsSync(cacheDir)) return;
  const verify = await ocicache(["verify", "--json"]);
  expect(verify.code).toBe(0);
  const report = JSON.parse(verify.stdout);
  expect(report.corrupt).toEqual([]);
  expect(report.missing).toEqual([]);
}

function kernelCached(): boolean {
  return existsSync(join(cacheDir, "blobs", "sha256", digestHex(kernel)));
}

function partialSize(): number {
  const path = join(cacheDir, "tmp", `${digestHex(kernel)}.partial`);
  return existsSync(path) ? statSync(path).size : 0;
}

/** A raw fault for the kernel blob's GET only. */
function onKernel(fault: (socket: Parameters<RawFault>[1], bytes: Uint8Array, upstream: Response) => void): RawFault {
  return async (request, socket, upstream) => {
    if (request.method !== "GET" || !request.path.includes(`/blobs/${kernel}`)) return false;
    const response = await upstream();
    fault(socket, new Uint8Array(await response.arrayBuffer()), response);
    return true;
  };
}

describe("the fault matrix", () => {
  test("connection dropped mid-blob: exit 5; the next pull resumes with Range and succeeds", async () => {
    let drops = 1;
    const server = startRawServer(registry.url, async (request, socket, upstream) => {
      if (request.method !== "GET" || !request.path.includes(`/blobs/${kernel}`) || drops-- <= 0) return false;
      const response = await upstream();
      const bytes = new Uint8Array(await response.arrayBuffer());
      writeResponse(socket, 200, response.headers, bytes.subarray(0, 250_000), bytes.length);
      setTimeout(() => socket.terminate(), 100);
      return true;
    });
    try {
      const first = await ocicache(["pull", refVia(server.host), "-o", out()]);
      expect(first.code).toBe(5);
      expect(first.stderr).toContain("connection dropped");
      expect(kernelCached()).toBe(false);
      expect(partialSize()).toBeGreaterThan(0);
      const kept = partialSize();
      const second = await ocicache(["pull", refVia(server.host), "-o", out()]);
      expect(second.code).toBe(0);
      const range = server.requests.filter((r) => r.path.includes(`/blobs/${kernel}`)).at(-1)!.headers.range;
      expect(range).toBe(`bytes=${kept}-`);
      // The log says where it resumed, and counts only the bytes fetched now.
      expect(second.stderr).toContain(`ocicache: resuming ${refVia(server.host)} kernel at ${formatBytes(kept)}\n`);
      const fetchedNow = formatBytes(image.manifests[host].files.kernel.length - kept).replace(".", "\\.");
      expect(second.stderr).toMatch(new RegExp(`fetched .* kernel \\(${fetchedNow} in .*, resumed at `));
      expect(readFileSync(join(out(), "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
      await expectConsistent();
    } finally {
      server.stop();
    }
  });

  test("a registry that ignores Range (200 instead of 206) is handled by starting over", async () => {
    const server = startRawServer(registry.url, async (request, socket) => {
      if (request.method !== "GET" || !request.path.includes(`/blobs/${kernel}`)) return false;
      const whole = await fetch(`${registry.url}${request.path}`);
      const bytes = new Uint8Array(await whole.arrayBuffer());
      writeResponse(socket, 200, whole.headers, bytes, bytes.length);
      endAfterFlush(socket);
      return true;
    });
    try {
      const partial = join(cacheDir, "tmp", `${digestHex(kernel)}.partial`);
      new Store(cacheDir).init();
      writeFileSync(partial, new Uint8Array(100_000).fill(7));
      const pulled = await ocicache(["pull", refVia(server.host), "-o", out()]);
      expect(pulled.code).toBe(0);
      expect(server.requests.find((r) => r.path.includes(`/blobs/${kernel}`))!.headers.range).toBe("bytes=100000-");
      expect(readFileSync(join(out(), "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
      await expectConsistent();
    } finally {
      server.stop();
    }
  });

  test("cat of a blob with a partial download resumes it and writes every byte, the partial's first", async () => {
    new Store(cacheDir).init();
    const partial = join(cacheDir, "tmp", `${digestHex(kernel)}.partial`);
    writeFileSync(partial, image.manifests[host].files.kernel.subarray(0, 250_000));
    const proxy = startProxy(registry.url);
    try {
      const ran = await ocicache(["cat", `${proxy.host}/faults-${run}/app@${kernel}`]);
      expect(ran.code).toBe(0);
      expect(ran.bytes).toEqual(new Uint8Array(image.manifests[host].files.kernel));
      expect(proxy.requests.find((r) => r.path.includes(`/blobs/${kernel}`) && r.method === "GET")!.headers.range).toBe(
        "bytes=250000-",
      );
      expect(kernelCached()).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  test("a resumed partial file whose bytes are wrong fails the digest check (exit 4) and is removed", async () => {
    const server = startRawServer(registry.url, async () => false);
    try {
      new Store(cacheDir).init();
      const partial = join(cacheDir, "tmp", `${digestHex(kernel)}.partial`);
      writeFileSync(partial, new Uint8Array(100_000).fill(7));
      const pulled = await ocicache(["pull", refVia(server.host), "-o", out()]);
      expect(pulled.code).toBe(4);
      expect(existsSync(partial)).toBe(false);
      expect(kernelCached()).toBe(false);
      expect((await ocicache(["pull", refVia(server.host), "-o", out()])).code).toBe(0);
      await expectConsistent();
    } finally {
      server.stop();
    }
  });

  test.each([
    ["short", (n: number) => n - 1000],
    ["long", (n: number) => n + 1000],
  ])("a %s Content-Length: exit 4 or 5, nothing committed", async (_, length) => {
    const server = startRawServer(
      registry.url,
      onKernel((socket, bytes, response) => {
        const declared = length(bytes.length);
        writeResponse(socket, 200, response.headers, bytes.subarray(0, Math.min(declared, bytes.length)), declared);
        endAfterFlush(socket);
      }),
    );
    try {
      const pulled = await ocicache(["pull", refVia(server.host), "-o", out()]);
      expect([4, 5]).toContain(pulled.code);
      expect(kernelCached()).toBe(false);
      expect(existsSync(join(out(), "kernel"))).toBe(false);
      await expectConsistent();
    } finally {
      server.stop();
    }
  });

  test("a registry that stops sending mid-blob: the idle timeout ends it with exit 5, a partial kept", async () => {
    const server = startRawServer(
      registry.url,
      onKernel((socket, bytes, response) => {
        writeResponse(socket, 200, response.headers, bytes.subarray(0, 200_000), bytes.length);
      }),
    );
    try {
      const started = Date.now();
      const pulled = await ocicache(["pull", refVia(server.host), "-o", out()], { OCICACHE_IDLE_TIMEOUT: "1s" });
      expect(pulled.code).toBe(5);
      expect(pulled.stderr).toContain("nothing received for 1s");
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(kernelCached()).toBe(false);
      expect(partialSize()).toBeGreaterThan(0);
      await expectConsistent();
    } finally {
      server.stop();
    }
  });

  test("429 and 503 with Retry-After, then success", async () => {
    let faults = 2;
    const proxy = startProxy(registry.url, (request, forward) => {
      if (request.url.includes("/blobs/") && faults > 0) {
        faults--;
        return new Response("wait", { status: faults === 1 ? 429 : 503, headers: { "Retry-After": "1" } });
      }
      return forward();
    });
    try {
      const pulled = await ocicache(["pull", refVia(proxy.host), "-o", out()]);
      expect(pulled.code).toBe(0);
      expect(faults).toBe(0);
      expect(readFileSync(join(out(), "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    } finally {
      await proxy.stop();
    }
  });

  test("500 forever: exit 5 after the bounded retries", async () => {
    const proxy = startProxy(registry.url, () => new Response("down", { status: 500 }));
    try {
      const pulled = await ocicache(["pull", refVia(proxy.host)]);
      expect(pulled.code).toBe(5);
      expect(pulled.stderr).toContain("answered 500");
      expect(proxy.requests.length).toBe(4);
      expect(existsSync(join(cacheDir, "index.json"))).toBe(false);
    } finally {
      await proxy.stop();
    }
  });

  test("a redirect loop: exit 5 after the bound", async () => {
    const proxy = startProxy(registry.url, (request, forward) =>
      request.url.includes("/blobs/")
        ? new Response(null, { status: 302, headers: { Location: request.url } })
        : forward(),
    );
    try {
      const pulled = await ocicache(["pull", refVia(proxy.host)]);
      expect(pulled.code).toBe(5);
      expect(pulled.stderr).toContain("more than 5 redirects");
      await expectConsistent();
    } finally {
      await proxy.stop();
    }
  });

  test.each<[string, ProxyHook]>([
    [
      "larger than the limit",
      () =>
        new Response(new Uint8Array(MAX_MANIFEST_BYTES + 10), {
          headers: { "Content-Type": "application/vnd.oci.image.index.v1+json" },
        }),
    ],
    [
      "malformed JSON",
      () =>
        new Response('{"schemaVersion": 2, ', {
          headers: { "Content-Type": "application/vnd.oci.image.index.v1+json" },
        }),
    ],
    [
      "of a wrong media type",
      () =>
        new Response(JSON.stringify({ schemaVersion: 2, mediaType: "text/html" }), {
          headers: { "Content-Type": "text/html" },
        }),
    ],
  ])("a manifest %s: a clear error, exit 4", async (_, answer) => {
    const proxy = startProxy(registry.url, (request, forward) =>
      request.url.includes("/manifests/") ? answer(request, forward) : forward(),
    );
    try {
      const pulled = await ocicache(["pull", refVia(proxy.host)]);
      expect(pulled.code).toBe(4);
      expect(pulled.stderr.trim().split("\n")).toHaveLength(1);
      expect(pulled.stderr).toMatch(/larger than the limit|not valid JSON|unsupported media type "text\/html"/);
      await expectConsistent();
    } finally {
      await proxy.stop();
    }
  });

  test.skipIf(!CAN_MOUNT)(
    "ENOSPC on the cache file system: bytes delivered, one warning, cache consistent (mounts a tmpfs: root only)",
    async () => {
      const fs = mountTmpfs(300 * 1024);
      try {
        cacheDir = join(fs.dir, "cache");
        const pulled = await ocicache(["pull", `${image.name}:1`, "-o", out()]);
        expect(pulled.code).toBe(0);
        expect(pulled.stderr.match(/warning: .*no space left on device/g)).toHaveLength(1);
        expect(readFileSync(join(out(), "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
        expect(readdirSync(join(cacheDir, "tmp")).filter((f) => f.includes("part"))).toEqual([]);
        await expectConsistent();
      } finally {
        fs.unmount();
        cacheDir = join(dir, "cache");
      }
    },
  );
});

describe("signals", () => {
  test.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)("%s during a pull exits %i, keeps the partial, and the next pull resumes", async (signal, code) => {
    const server = startRawServer(
      registry.url,
      onKernel((socket, bytes, response) => {
        writeResponse(socket, 200, response.headers, new Uint8Array(), bytes.length);
        let sent = 0;
        const timer = setInterval(() => {
          if (sent >= bytes.length || socket.readyState !== 1) return clearInterval(timer);
          send(socket, bytes.subarray(sent, sent + 32 * 1024));
          sent += 32 * 1024;
        }, 30);
      }),
    );
    try {
      const proc = Bun.spawn(["bun", CLI, "pull", refVia(server.host), "-o", out()], {
        env: env(),
        stdout: "ignore",
        stderr: "pipe",
      });
      const deadline = Date.now() + 20_000;
      while (partialSize() < 64 * 1024 && Date.now() < deadline) await Bun.sleep(10);
      proc.kill(signal);
      const stderr = await new Response(proc.stderr).text();
      expect(await proc.exited).toBe(code);
      expect(stderr).toContain(`Interrupted by ${signal}`);
      expect(kernelCached()).toBe(false);
      expect(partialSize()).toBeGreaterThan(0);
      expect(readdirSync(join(cacheDir, "tmp")).filter((f) => f.endsWith(".lock"))).toEqual([]);
    } finally {
      server.stop();
    }
    const resumed = await ocicache(["pull", `${image.name}:1`, "-o", out()]);
    expect(resumed.code).toBe(0);
    expect(readFileSync(join(out(), "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    await expectConsistent();
  });
});

describe("cross-process single-flight", () => {
  test("8 processes pulling one reference at once: one upstream GET per blob, all get the right bytes", async () => {
    const proxy = startProxy(registry.url, async (request, forward) => {
      const response = await forward();
      if (request.method !== "GET" || !request.url.includes(`/blobs/${kernel}`)) return response;
      return trickle(response, 64 * 1024, 10);
    });
    try {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => ocicache(["pull", refVia(proxy.host), "-o", join(dir, `out${i}`)])),
      );
      expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
      for (const layer of image.manifests[host].layers) expect(proxy.count(`/blobs/${layer.digest}`, "GET")).toBe(1);
      for (let i = 0; i < 8; i++)
        expect(readFileSync(join(dir, `out${i}`, "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
      await expectConsistent();
    } finally {
      await proxy.stop();
    }
  });

  test("a lock whose owner is dead is taken over", async () => {
    new Store(cacheDir).init();
    writeFileSync(join(cacheDir, "tmp", `${digestHex(kernel)}.lock`), "999999999 0 dead");
    const pulled = await ocicache(["pull", `${image.name}:1`, "-o", out()]);
    expect(pulled.code).toBe(0);
    expect(kernelCached()).toBe(true);
  });

  test("a waiting process that gives up fetches by itself rather than fail", async () => {
    new Store(cacheDir).init();
    const lock = join(cacheDir, "tmp", `${digestHex(kernel)}.lock`);
    writeFileSync(lock, `${process.pid} ${Date.now()} held-by-the-test`);
    const started = Date.now();
    const pulled = await ocicache(["pull", `${image.name}:1`, "-o", out()], { OCICACHE_LOCK_TIMEOUT: "1s" });
    expect(pulled.code).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(readFileSync(join(out(), "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    expect(existsSync(lock)).toBe(true);
    await expectConsistent();
  });

  test("cleanup concurrently with 4 pulls: all pulls succeed and verify is clean", async () => {
    const refs = [
      `${image.name}:1`,
      `${image.name}@${image.indexDigest}`,
      `${image.name}:1`,
      `${image.name}@${image.indexDigest}`,
    ];
    const pulls = Promise.all(
      refs.map((ref, i) =>
        ocicache(["pull", ref, "-o", join(dir, `p${i}`), "--platform", i % 2 === 0 ? "amd64" : "arm64"]),
      ),
    );
    const cleanups = Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        await Bun.sleep(i * 30);
        return ocicache(["gc", "--max-size", "0"]);
      }),
    );
    const [pulled, cleaned] = await Promise.all([pulls, cleanups]);
    expect(pulled.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    expect(cleaned.map((r) => [r.code, r.stderr])).toEqual(Array(4).fill([0, ""]));
    expect(readFileSync(join(dir, "p1", "kernel"))).toEqual(Buffer.from(image.manifests.arm64.files.kernel));
    await expectConsistent();
  });
});
