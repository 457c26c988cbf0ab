import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RUN_ID, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, startRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const HAS_PODMAN = Bun.which("podman") !== null;
const tmp = useTempDir("podman");
const repo = `podman-${RUN_ID}/app`;

let registry: RegistryHandle;
let image: SampleImage;
beforeAll(async () => {
  registry = await startRegistry();
  image = await pushSampleImage(registry.url, repo, "1", { format: "spec", kernelBytes: 100_000, initrdBytes: 50_000 });
});
afterAll(() => registry.stop());

/** podman, rootful, with its own vfs storage and the given registries.conf. */
function podman(storage: string, registriesConf: string, ...args: string[]): { code: number; out: string } {
  const ran = Bun.spawnSync(
    ["podman", "--root", join(storage, "graph"), "--runroot", join(storage, "run"), "--storage-driver", "vfs", ...args],
    { env: { ...process.env, CONTAINERS_REGISTRIES_CONF: registriesConf }, stdout: "pipe", stderr: "pipe" },
  );
  return { code: ran.exitCode, out: `${ran.stdout}${ran.stderr}` };
}

describe.skipIf(!HAS_PODMAN)("podman through the mirror (registries.conf)", () => {
  test("pulls the image's digest through the mirror, then from a fresh store with the upstream stopped", async () => {
    const serve = await startServe(tmp.path, registry.host);
    try {
      const conf = join(tmp.path, "registries.conf");
      writeFileSync(
        conf,
        [
          "[[registry]]",
          `location = "${registry.host}"`,
          "insecure = true",
          "",
          "[[registry.mirror]]",
          `location = "${serve.host}"`,
          "insecure = true",
          "",
        ].join("\n"),
      );
      const ref = `${registry.host}/${repo}:1`;
      const first = podman(join(tmp.path, "first"), conf, "pull", ref);
      expect(first.code).toBe(0);
      const digest = podman(join(tmp.path, "first"), conf, "image", "inspect", "--format", "{{.Digest}}", ref);
      expect(digest.out.trim()).toBe(image.indexDigest);
      const metrics = await (await fetch(`http://${serve.host}/metrics`)).text();
      expect(Number(/^ocicache_misses_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
      await registry.stop();
      const second = podman(join(tmp.path, "second"), conf, "pull", ref);
      expect(second.out).not.toContain("Error");
      expect(second.code).toBe(0);
    } finally {
      await serve.stop();
    }
  }, 90_000);
});
