/**
 * The mirror's soak: `bun scripts/bench-mirror.ts [--clients 64] [--images 8] [--mib 128] [--throttle 64]`.
 *
 * Starts the real registry on 127.0.0.1 behind a proxy that sends each blob
 * at `--throttle` MiB/s (a remote upstream), pushes `--images` images of one
 * `--mib` MiB layer, starts `ocicache serve` on that upstream, and has
 * `--clients` clients fetch the layers at once (spread over the images), cold
 * and then warm, each round on a fresh server; then a cold `skopeo copy`
 * (and `ctr content fetch`, where containerd is installed) of one
 * `--latency-mib` MiB layer straight from the upstream and through a fresh
 * mirror, three times each, alternating. Prints, per round, the
 * server's idle and peak RSS (VmHWM), the peak of the mirror's own buffers
 * (its `/metrics`), the throughput to the clients, p50 and p99 time to first
 * byte, and the upstream GETs per blob, as a Markdown table.
 */
import { randomFillSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startContainerd } from "../tests/helpers/containerd.ts";
import { pushBlob, pushManifest } from "../tests/helpers/images.ts";
import { freePort, startRegistry } from "../tests/helpers/registry.ts";

const arg = (name: string, fallback: number) => {
  const i = Bun.argv.indexOf(name);
  return i === -1 ? fallback : Number(Bun.argv[i + 1]);
};
const CLIENTS = arg("--clients", 64);
const IMAGES = arg("--images", 8);
const MIB = arg("--mib", 128);
const THROTTLE_MIB_S = arg("--throttle", 64);
const MiB = 1024 * 1024;

const work = mkdtempSync(join(tmpdir(), "ocicache-soak-"));
const registry = await startRegistry();
const gets = new Map<string, number>();

// The upstream as a remote registry would be: every blob body at THROTTLE_MIB_S.
const upstream = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 0,
  async fetch(request) {
    const url = new URL(request.url);
    const blob = url.pathname.includes("/blobs/") && request.method === "GET";
    if (blob) gets.set(url.pathname, (gets.get(url.pathname) ?? 0) + 1);
    const headers = new Headers(request.headers);
    headers.delete("host");
    const response = await fetch(`${registry.url}${url.pathname}${url.search}`, {
      method: request.method,
      headers,
      redirect: "manual",
    });
    const out = new Headers(response.headers);
    out.delete("transfer-encoding");
    if (!blob || response.body === null)
      return new Response(request.method === "HEAD" ? null : response.body, { status: response.status, headers: out });
    return new Response(throttle(response.body, THROTTLE_MIB_S * MiB), { status: response.status, headers: out });
  },
});

function throttle(body: ReadableStream<Uint8Array>, bytesPerSecond: number): ReadableStream<Uint8Array> {
  const started = performance.now();
  let sent = 0;
  const reader = body.getReader();
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      sent += value.byteLength;
      const due = (sent / bytesPerSecond) * 1000 - (performance.now() - started);
      if (due > 0) await Bun.sleep(due);
      controller.enqueue(value);
    },
    cancel: () => reader.cancel(),
  });
}

/** The image of the latency comparison: one layer of LATENCY_MIB MiB. */
const LATENCY_REPO = "soak/latency";
const LATENCY_MIB = arg("--latency-mib", 256);

const layers: Array<{ repo: string; digest: string }> = [];
/** Push an image of one layer of `mib` MiB of random bytes, tagged 1; its layer's digest. */
async function pushImage(repo: string, mib: number): Promise<string> {
  const bytes = new Uint8Array(mib * MiB);
  randomFillSync(bytes);
  const digest = await pushBlob(registry.url, repo, bytes);
  const config = new TextEncoder().encode("{}");
  const configDigest = await pushBlob(registry.url, repo, config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: [{ mediaType: "application/vnd.unikraft.initrd.v1", digest, size: bytes.length }],
  });
  await pushManifest(registry.url, repo, "1", "application/vnd.oci.image.manifest.v1+json", manifest);
  return digest;
}

for (let i = 0; i < IMAGES; i++) layers.push({ repo: `soak/app${i}`, digest: await pushImage(`soak/app${i}`, MIB) });
await pushImage(LATENCY_REPO, LATENCY_MIB);

/** A fresh `ocicache serve` on the cache of this run, warmed up, with its port. */
async function startServe(
  cacheDir = join(work, "cache"),
): Promise<{ proc: ReturnType<typeof Bun.spawn>; port: number }> {
  const port = freePort();
  const cli = join(import.meta.dir, "..", "lib", "cli", "main.ts");
  const proc = Bun.spawn(
    ["bun", cli, "serve", "--listen", `127.0.0.1:${port}`, "--upstream", `127.0.0.1:${upstream.port}`],
    {
      env: { ...process.env, OCICACHE_DIR: cacheDir, XDG_CONFIG_HOME: join(work, "config") },
      stdout: "pipe",
      stderr: "ignore",
    },
  );
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  reader.releaseLock();
  await (await fetch(`http://127.0.0.1:${port}/v2/`)).arrayBuffer();
  return { proc, port };
}

function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) * 1024;
  return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
}

/** One client: the time to its first byte and to its last, in ms, and whether the bytes were the blob. */
async function client(
  port: number,
  layer: { repo: string; digest: string },
): Promise<{ ttfb: number; total: number; ok: boolean }> {
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${port}/v2/${layer.repo}/blobs/${layer.digest}`);
  const body = response.body!.getReader();
  const hasher = new Bun.CryptoHasher("sha256");
  let ttfb = -1;
  for (;;) {
    const { done, value } = await body.read();
    if (done) break;
    if (ttfb < 0) ttfb = performance.now() - started;
    hasher.update(value);
  }
  return { ttfb, total: performance.now() - started, ok: `sha256:${hasher.digest("hex")}` === layer.digest };
}

const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]!;

async function round(name: string): Promise<string> {
  const { proc, port } = await startServe();
  const idle = memory(proc.pid).rss;
  const started = performance.now();
  let buffered = 0;
  const sampler = setInterval(async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    buffered = Math.max(buffered, Number(/^ocicache_mirror_buffered_bytes (\d+)/m.exec(text)?.[1] ?? 0));
  }, 200);
  const results = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => client(port, layers[i % layers.length]!)),
  );
  clearInterval(sampler);
  const seconds = (performance.now() - started) / 1000;
  const peak = memory(proc.pid).hwm;
  proc.kill("SIGTERM");
  await proc.exited;
  const bytes = CLIENTS * MIB * MiB;
  const maxGets = Math.max(...layers.map((l) => gets.get(`/v2/${l.repo}/blobs/${l.digest}`) ?? 0));
  const bad = results.filter((r) => !r.ok).length;
  const ttfbs = results.map((r) => r.ttfb);
  const cells = [
    name,
    (idle / MiB).toFixed(0),
    (peak / MiB).toFixed(0),
    (buffered / MiB).toFixed(1),
    (bytes / MiB / seconds).toFixed(0),
    percentile(ttfbs, 50).toFixed(0),
    percentile(ttfbs, 99).toFixed(0),
    seconds.toFixed(1),
    String(maxGets),
    String(bad),
  ];
  return `| ${cells.join(" | ")} |`;
}

/** A client that copies the latency image from a registry `host`, in ms. */
type Client = (host: string, run: string) => Promise<number>;

/** `skopeo copy` into a fresh directory. */
const skopeo: Client = async (host, run) => {
  const out = join(work, `skopeo-${run}`);
  const ms = await timed([
    "skopeo",
    "copy",
    "--src-tls-verify=false",
    `docker://${host}/${LATENCY_REPO}:1`,
    `dir:${out}`,
  ]);
  rmSync(out, { recursive: true, force: true });
  return ms;
};

/** `ctr content fetch` into a fresh containerd (of its own root), where containerd is installed. */
const ctr: Client = async (host, run) => {
  const containerd = await startContainerd(join(work, `containerd-${run}`));
  try {
    const socket = join(work, `containerd-${run}`, "containerd.sock");
    return await timed(["ctr", "--address", socket, "content", "fetch", "--plain-http", `${host}/${LATENCY_REPO}:1`]);
  } finally {
    await containerd.stop();
    rmSync(join(work, `containerd-${run}`), { recursive: true, force: true });
  }
};

async function timed(argv: string[]): Promise<number> {
  const started = performance.now();
  const proc = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe" });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${argv.slice(0, 3).join(" ")}: ${stderr.trim()}`);
  return performance.now() - started;
}

/** One client's cold copy through a fresh mirror against the same copy straight from the upstream, alternating. */
async function latency(name: string, client: Client, runs: number): Promise<string> {
  const direct: number[] = [];
  const mirrored: number[] = [];
  for (let i = 0; i < runs; i++) {
    direct.push(await client(`127.0.0.1:${upstream.port}`, `${name}-direct-${i}`));
    const cacheDir = join(work, `latency-cache-${i}`);
    const { proc, port } = await startServe(cacheDir);
    try {
      mirrored.push(await client(`127.0.0.1:${port}`, `${name}-mirrored-${i}`));
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(cacheDir, { recursive: true, force: true });
    }
  }
  const [d, m] = [percentile(direct, 50), percentile(mirrored, 50)];
  return `| ${name} | ${d.toFixed(0)} | ${m.toFixed(0)} | ${(m / d).toFixed(2)} × |`;
}

try {
  const lines = [
    `#### Mirror soak: ${CLIENTS} clients on ${IMAGES} uncached images of ${MIB} MiB, ` +
      `upstream at ${THROTTLE_MIB_S} MiB/s per blob`,
    "",
    "| round | server idle RSS MiB | peak RSS MiB | mirror buffers, peak MiB | MiB/s to clients | TTFB p50 ms | " +
      "TTFB p99 ms | seconds | upstream GETs per blob (max) | wrong bodies |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    await round("cold"),
    await round("warm"),
    "",
    `#### Cold pull through the mirror: one ${LATENCY_MIB} MiB layer, upstream at ${THROTTLE_MIB_S} MiB/s`,
    "",
    "| client | direct median ms | through the mirror median ms | ratio |",
    "| --- | ---: | ---: | ---: |",
    await latency("skopeo copy", skopeo, 3),
    ...(Bun.which("containerd") === null ? [] : [await latency("ctr content fetch", ctr, 3)]),
  ];
  console.log(lines.join("\n"));
} finally {
  upstream.stop(true);
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
