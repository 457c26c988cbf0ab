/**
 * Builds unikernel images like the ones unikernel builds pull, with random
 * content, and pushes them through the registry's own push API.
 *
 * Two formats: `spec` (the unikraft image spec: one plain tar layer holding
 * `/unikraft/bin/kernel` and `/unikraft/bin/initrd`, named by layer
 * annotations, plus ROM layers) and `kraftkit` (standalone kernel and initrd
 * layers). Each is an index of two manifests, x86_64 and arm64.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PushedDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}

export interface SampleFiles {
  kernel: Uint8Array;
  initrd: Uint8Array;
  "kernel.dbg"?: Uint8Array;
  roms: Uint8Array[];
}

export interface SampleImage {
  /** `host/repo:tag` */
  ref: string;
  /** `host/repo` */
  name: string;
  indexDigest: string;
  manifests: Record<"amd64" | "arm64", { digest: string; files: SampleFiles; layers: PushedDescriptor[] }>;
}

export interface SampleOptions {
  format: "spec" | "kraftkit";
  kernelBytes?: number;
  initrdBytes?: number;
  romBytes?: number[];
  debugKernelBytes?: number;
  /** Headers for every push request (basic or bearer auth). */
  headers?: Record<string, string>;
  /** The CA to trust for an HTTPS registry. */
  ca?: string;
}

/**
 * Upload one blob: POST to start, PUT with the digest to finish (distribution spec, "Pushing a blob monolithically").
 */
/** Headers for every push request (basic or bearer auth), and a CA to trust for an HTTPS registry. */
export interface PushOptions {
  headers?: Record<string, string>;
  ca?: string;
}

function init(push: PushOptions, extra: RequestInit & { headers?: Record<string, string> }): RequestInit {
  return {
    ...extra,
    headers: { ...push.headers, ...extra.headers },
    ...(push.ca !== undefined && { tls: { ca: push.ca } }),
  };
}

export async function pushBlob(
  url: string,
  repo: string,
  bytes: Uint8Array | Blob,
  push: PushOptions = {},
): Promise<string> {
  const data = bytes instanceof Blob ? new Uint8Array(await bytes.arrayBuffer()) : bytes;
  const digest = `sha256:${new Bun.CryptoHasher("sha256").update(data).digest("hex")}`;
  const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, init(push, { method: "POST" }));
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get("location")!, url);
  location.searchParams.set("digest", digest);
  const put = await fetch(
    location,
    init(push, { method: "PUT", body: data, headers: { "Content-Type": "application/octet-stream" } }),
  );
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${await put.text()}`);
  return digest;
}

/** Upload a file as one blob, streamed (for blobs too large to hold in memory). */
export async function pushBlobFile(url: string, repo: string, path: string, digest: string): Promise<void> {
  const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get("location")!, url);
  location.searchParams.set("digest", digest);
  const file = Bun.file(path);
  const put = await fetch(location, {
    method: "PUT",
    body: file,
    headers: { "Content-Type": "application/octet-stream", "Content-Length": String(file.size) },
  });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${await put.text()}`);
}

/** PUT a manifest under a tag or digest. */
export async function pushManifest(
  url: string,
  repo: string,
  reference: string,
  mediaType: string,
  body: string,
  push: PushOptions = {},
): Promise<string> {
  const response = await fetch(
    `${url}/v2/${repo}/manifests/${reference}`,
    init(push, { method: "PUT", body, headers: { "Content-Type": mediaType } }),
  );
  if (response.status !== 201) throw new Error(`manifest push: ${response.status} ${await response.text()}`);
  return `sha256:${new Bun.CryptoHasher("sha256").update(body).digest("hex")}`;
}

/** Build and push a two-platform unikernel image; returns what was pushed, bytes included. */
export async function pushSampleImage(
  url: string,
  repo: string,
  tag: string,
  options: SampleOptions,
): Promise<SampleImage> {
  const headers: PushOptions = {
    ...(options.headers !== undefined && { headers: options.headers }),
    ...(options.ca !== undefined && { ca: options.ca }),
  };
  const manifests = {} as SampleImage["manifests"];
  const descriptors: PushedDescriptor[] = [];
  for (const [arch, unikraftArch] of [
    ["amd64", "x86_64"],
    ["arm64", "arm64"],
  ] as const) {
    const files: SampleFiles = {
      kernel: randomBytes(options.kernelBytes ?? 64 * 1024),
      initrd: randomBytes(options.initrdBytes ?? 128 * 1024),
      roms: (options.romBytes ?? []).map((n) => randomBytes(n)),
      ...(options.debugKernelBytes !== undefined && { "kernel.dbg": randomBytes(options.debugKernelBytes) }),
    };
    const layers =
      options.format === "spec"
        ? await specLayers(url, repo, files, headers)
        : await kraftkitLayers(url, repo, files, headers);
    const config = JSON.stringify({
      architecture: arch,
      os: "linux",
      config: { Labels: { sample: randomBytes(8).toString("hex") } },
    });
    const configDigest = await pushBlob(url, repo, new TextEncoder().encode(config), headers);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
      layers,
    });
    const digest = await pushManifest(
      url,
      repo,
      `sha256:${hex(manifest)}`,
      "application/vnd.oci.image.manifest.v1+json",
      manifest,
      headers,
    );
    manifests[arch] = { digest, files, layers };
    descriptors.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest,
      size: Buffer.byteLength(manifest),
      platform:
        options.format === "spec" ? { os: "linux", architecture: arch } : { os: "qemu", architecture: unikraftArch },
      annotations: { "org.unikraft.kernel.arch": unikraftArch, "org.unikraft.kernel.plat": "qemu" },
    });
  }
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: descriptors,
  });
  const indexDigest = await pushManifest(url, repo, tag, "application/vnd.oci.image.index.v1+json", index, headers);
  const host = new URL(url).host;
  return { ref: `${host}/${repo}:${tag}`, name: `${host}/${repo}`, indexDigest, manifests };
}

async function kraftkitLayers(
  url: string,
  repo: string,
  files: SampleFiles,
  headers: PushOptions,
): Promise<PushedDescriptor[]> {
  const layers: PushedDescriptor[] = [];
  const add = async (mediaType: string, bytes: Uint8Array) =>
    layers.push({ mediaType, digest: await pushBlob(url, repo, bytes, headers), size: bytes.byteLength });
  await add("application/vnd.unikraft.kernel.v1", files.kernel);
  await add("application/vnd.unikraft.initrd.v1", files.initrd);
  if (files["kernel.dbg"] !== undefined) await add("application/vnd.unikraft.kernel.dbg.v1", files["kernel.dbg"]);
  for (const rom of files.roms) await add("application/vnd.unikraft.rom.v1", rom);
  return layers;
}

async function specLayers(
  url: string,
  repo: string,
  files: SampleFiles,
  headers: PushOptions,
): Promise<PushedDescriptor[]> {
  const tar = makeTar({
    "unikraft/bin/kernel": files.kernel,
    "unikraft/bin/initrd": files.initrd,
    ...(files["kernel.dbg"] !== undefined && { "unikraft/bin/kernel.dbg": files["kernel.dbg"] }),
    "etc/hostname": new TextEncoder().encode("unikraft\n"),
  });
  const annotations: Record<string, string> = {
    "org.unikraft.kernel.image": "/unikraft/bin/kernel",
    "org.unikraft.kernel.initrd": "/unikraft/bin/initrd",
    ...(files["kernel.dbg"] !== undefined && { "org.unikraft.kernel.dbg": "/unikraft/bin/kernel.dbg" }),
  };
  const layers: PushedDescriptor[] = [
    {
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: await pushBlob(url, repo, tar, headers),
      size: tar.byteLength,
      annotations,
    },
  ];
  for (const rom of files.roms) {
    layers.push({
      mediaType: "application/vnd.unikraft.rom.v1",
      digest: await pushBlob(url, repo, rom, headers),
      size: rom.byteLength,
    });
  }
  return layers;
}

/** A tar made by the system's GNU tar (an independent producer), in POSIX (pax) format. */
export function makeTar(entries: Record<string, Uint8Array>): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "ocicache-tar-"));
  try {
    for (const [name, bytes] of Object.entries(entries)) {
      mkdirSync(join(dir, "root", name, ".."), { recursive: true });
      writeFileSync(join(dir, "root", name), bytes);
    }
    const result = Bun.spawnSync([
      "tar",
      "--format=posix",
      "--sort=name",
      "-cf",
      join(dir, "layer.tar"),
      "-C",
      join(dir, "root"),
      ".",
    ]);
    if (result.exitCode !== 0) throw new Error(`tar failed: ${result.stderr.toString()}`);
    return readFileSync(join(dir, "layer.tar"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function hex(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}
