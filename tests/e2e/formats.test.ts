import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../lib/oci/digest.ts";
import { runCli } from "../helpers/cli.ts";
import { RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { makeTar } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const tmp = useTempDir("formats");
let registry: RegistryHandle;
const kernel = new Uint8Array(randomBytes(300 * 1024));
const initrd = new Uint8Array(randomBytes(200 * 1024));

beforeAll(async () => {
  registry = await sharedRegistry();
});
afterAll(() => registry.stop());

/** A unikraft image in the spec's tar format, as an OCI layout in `dir`: one plain tar layer, annotated. */
function writeLayout(dir: string, entries: Record<string, Uint8Array>, annotate = true): void {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  const put = (bytes: Uint8Array) => {
    const digest = digestOf(bytes);
    writeFileSync(join(dir, "blobs", "sha256", digest.slice(7)), bytes);
    return { digest, size: bytes.byteLength };
  };
  const tar = makeTar(entries);
  const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux" }));
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...put(config) },
      layers: [
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar",
          ...put(tar),
          ...(annotate && {
            annotations: {
              "org.unikraft.kernel.image": "/unikraft/bin/kernel",
              "org.unikraft.kernel.initrd": "/unikraft/bin/initrd",
            },
          }),
        },
      ],
    }),
  );
  const top = { mediaType: "application/vnd.oci.image.manifest.v1+json", ...put(manifest) };
  const index = {
    schemaVersion: 2,
    manifests: [{ ...top, annotations: { "org.opencontainers.image.ref.name": "1" } }],
  };
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(dir, "index.json"), JSON.stringify(index));
}

/** Push the layout with plain `skopeo copy`, as a user would; returns the layer as the registry now has it. */
async function skopeoCopy(dir: string, ref: string, ...flags: string[]) {
  const argv = ["skopeo", "copy", "--dest-tls-verify=false", ...flags, `oci:${dir}:1`, `docker://${ref}`];
  const copied = Bun.spawnSync(argv, { stderr: "pipe" });
  expect(copied.stderr.toString()).toBe("");
  expect(copied.exitCode).toBe(0);
  const [name, tag] = ref.slice(registry.host.length + 1).split(":");
  const response = await fetch(`${registry.url}/v2/${name}/manifests/${tag}`, {
    headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  const manifest = (await response.json()) as { layers: Array<{ mediaType: string; annotations?: object }> };
  return manifest.layers[0]!;
}

describe("unikraft images that lost their annotations on the way", () => {
  test.each([
    ["gzip", [], "application/vnd.oci.image.layer.v1.tar+gzip"],
    ["zstd", ["--dest-compress-format", "zstd"], "application/vnd.oci.image.layer.v1.tar+zstd"],
  ] as const)(
    "pushed again with skopeo copy (%s): the kernel and initrd are found in the compressed layer",
    async (kind, flags, mediaType) => {
      const layout = join(tmp.path, "layout");
      writeLayout(layout, {
        "unikraft/bin/kernel": kernel,
        "unikraft/bin/initrd": initrd,
        "etc/hostname": new TextEncoder().encode("x\n"),
      });
      const ref = `${registry.host}/formats-${run}/app:${kind}`;
      const layer = await skopeoCopy(layout, ref, ...flags);
      expect(layer.mediaType).toBe(mediaType);
      // What happens to such an image on its way: recompressed, its annotations dropped.
      expect(layer.annotations).toBeUndefined();
      const env = { OCICACHE_DIR: join(tmp.path, "cache") };
      const pulled = await runCli(["pull", ref, "-o", join(tmp.path, "out"), "-q"], env);
      expect([pulled.code, pulled.stderr]).toEqual([0, ""]);
      expect(readFileSync(join(tmp.path, "out", "kernel"))).toEqual(Buffer.from(kernel));
      expect(readFileSync(join(tmp.path, "out", "initrd"))).toEqual(Buffer.from(initrd));
      // Written straight into the outputs as the layer decompressed: no second copy in the cache.
      const derivedBlob = join(tmp.path, "cache", "blobs", "sha256", digestOf(initrd).slice(7));
      expect(existsSync(derivedBlob)).toBe(false);
      // path needs a file of its own: it is taken out of the cached layer, offline, and recorded; verify checks it.
      const path = await runCli(["path", ref, "--role", "initrd", "--offline"], env);
      expect(path.stdout.trim()).toBe(join(tmp.path, "cache", "blobs", "sha256", digestOf(initrd).slice(7)));
      const verify = await runCli(["verify", "--json"], env);
      expect(verify.code).toBe(0);
      expect(JSON.parse(verify.stdout).wrongFiles).toEqual([]);
    },
  );

  test("no annotation: the spec's paths are looked for; an image with none of them is exit 3", async () => {
    const layout = join(tmp.path, "bare");
    writeLayout(layout, { "etc/hostname": new TextEncoder().encode("x\n") }, false);
    const ref = `${registry.host}/formats-${run}/empty:1`;
    await skopeoCopy(layout, ref);
    const pulled = await runCli(["pull", ref, "-o", join(tmp.path, "out")], { OCICACHE_DIR: join(tmp.path, "cache") });
    expect(pulled.code).toBe(3);
    expect(pulled.stderr).toContain("holds none of /unikraft/bin/kernel, /unikraft/bin/initrd");
  });
});
