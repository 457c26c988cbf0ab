import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../lib/oci/digest.ts";
import { startContainerd } from "../helpers/containerd.ts";
import { RUN_ID, useTempDir } from "../helpers/env.ts";
import { makeTar, pushBlob, pushManifest } from "../helpers/images.ts";
import { type RegistryHandle, startRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const HAS_CONTAINERD = Bun.which("containerd") !== null && Bun.which("ctr") !== null;
const tmp = useTempDir("containerd");
const repo = `containerd-${RUN_ID}/app`;

/** A small image containerd can unpack: one tar layer, and a config whose rootfs names it. */
async function pushRootfsImage(registry: RegistryHandle): Promise<{ manifest: string; layer: string }> {
  const tar = makeTar({ "etc/unikernel": new TextEncoder().encode("a root file system\n") });
  const layer = await pushBlob(registry.url, repo, tar);
  const config = new TextEncoder().encode(
    JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layer] } }),
  );
  const configDigest = await pushBlob(registry.url, repo, config);
  const mediaType = "application/vnd.oci.image.manifest.v1+json";
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: layer, size: tar.length }],
  });
  await pushManifest(registry.url, repo, "1", mediaType, body);
  return { manifest: digestOf(body), layer };
}

const counter = async (host: string, name: string) =>
  Number(new RegExp(`^ocicache_${name} (\\d+)`, "m").exec(await (await fetch(`http://${host}/metrics`)).text())?.[1]);

describe.skipIf(!HAS_CONTAINERD)("containerd through the mirror (ctr 1.6)", () => {
  let registry: RegistryHandle;
  let image: { manifest: string; layer: string };
  beforeAll(async () => {
    registry = await startRegistry();
    image = await pushRootfsImage(registry);
  });
  afterAll(() => registry.stop());

  test("content fetch and images pull --hosts-dir: misses, hits, and a pull with the upstream stopped", async () => {
    const serve = await startServe(tmp.path, registry.host);
    const first = await startContainerd(join(tmp.path, "first"));
    const second = await startContainerd(join(tmp.path, "second"));
    try {
      const fetched = first.ctr("content", "fetch", "--plain-http", "--all-platforms", `${serve.host}/${repo}:1`);
      expect(fetched.stderr).not.toContain("ctr:");
      expect(fetched.exitCode).toBe(0);
      expect(first.ctr("content", "ls", "-q").stdout.split("\n")).toContain(image.layer);
      const misses = await counter(serve.host, "misses_total");
      expect(misses).toBeGreaterThan(0);

      // containerd's hosts.toml: the upstream is the server, the mirror its first host.
      const hosts = join(tmp.path, "hosts", registry.host);
      mkdirSync(hosts, { recursive: true });
      writeFileSync(
        join(hosts, "hosts.toml"),
        `server = "http://${registry.host}"\n\n[host."http://${serve.host}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
      await registry.stop();
      const pull = [
        "images",
        "pull",
        "--hosts-dir",
        join(tmp.path, "hosts"),
        "--plain-http",
        "--snapshotter",
        "native",
      ];
      const pulled = second.ctr(...pull, `${registry.host}/${repo}:1`);
      expect(pulled.stderr).not.toContain("ctr:");
      expect(pulled.exitCode).toBe(0);
      expect(second.ctr("images", "ls", "-q").stdout).toContain(`${registry.host}/${repo}:1`);
      expect(second.ctr("content", "ls", "-q").stdout.split("\n")).toContain(image.manifest);
      expect(await counter(serve.host, "misses_total")).toBe(misses);
      expect(await counter(serve.host, "hits_total")).toBeGreaterThan(0);
    } finally {
      await first.stop();
      await second.stop();
      await serve.stop();
    }
  }, 60_000);
});
