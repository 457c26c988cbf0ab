/**
 * What a user met at the seams between surfaces, each row of the contract round a test through the CLI or a real
 * socket: a cache that cannot take a download, a cleanup of a read-only cache, and (below) the rest of the rows.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, runCli } from "../helpers/cli.ts";
import { CAN_MOUNT, HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { mountTmpfs } from "../helpers/mount.ts";
import { type ProxyHandle, startProxy, trickle } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const MiB = 1024 * 1024;
const tmp = useTempDir("contract");
let registry: RegistryHandle;
let proxy: ProxyHandle;
let image: SampleImage;

beforeAll(async () => {
  registry = await sharedRegistry();
  proxy = startProxy(registry.url);
  image = await pushSampleImage(registry.url, `contract-${run}/app`, "1", {
    format: "kraftkit",
    kernelBytes: 4 * MiB,
    initrdBytes: 64 * 1024,
  });
});
afterAll(async () => {
  await proxy.stop();
  await registry.stop();
});

const through = () => `${proxy.host}/contract-${run}/app:1`;
const lastLine = (text: string) => text.trim().split("\n").at(-1)!;

describe.skipIf(!CAN_MOUNT)("a cache that cannot take the download (mounts a tmpfs: root only)", () => {
  test("path and pull into a full cache: exit 1, what is free and needed, no blob downloaded", async () => {
    const fs = mountTmpfs(1 * MiB);
    try {
      for (const args of [
        ["path", through(), "--role", "kernel"],
        ["pull", through()],
      ]) {
        const before = proxy.count("/blobs/", "GET");
        const ran = await runCli([...args, "--cache-dir", fs.dir]);
        expect(ran.code).toBe(1);
        expect(lastLine(ran.stderr)).toMatch(/^ocicache: error: Cannot keep the files of .* its file system is full: /);
        expect(lastLine(ran.stderr)).toMatch(/ free, 4\.\d MiB needed/);
        expect(proxy.count("/blobs/", "GET")).toBe(before);
      }
    } finally {
      fs.unmount();
    }
  });

  test("path into a read-only cache says so before any blob is downloaded; gc says so in one line", async () => {
    const fs = mountTmpfs(16 * MiB);
    try {
      expect((await runCli(["gc", "--cache-dir", fs.dir])).code).toBe(0);
      fs.readOnly();
      const before = proxy.count("/blobs/", "GET");
      const ran = await runCli(["path", through(), "--role", "kernel", "--cache-dir", fs.dir]);
      expect(ran.code).toBe(1);
      expect(lastLine(ran.stderr)).toContain("read-only file system");
      expect(proxy.count("/blobs/", "GET")).toBe(before);
      const gc = await runCli(["gc", "--cache-dir", fs.dir]);
      expect(gc.code).toBe(1);
      expect(gc.stderr).toBe(`ocicache: error: Cannot change the cache "${fs.dir}": read-only file system\n`);
    } finally {
      fs.unmount();
    }
  });

  test("pull -o into a full cache still hands the files out, with one warning", async () => {
    const fs = mountTmpfs(1 * MiB);
    try {
      const out = join(tmp.path, "out");
      const ran = await runCli(["pull", through(), "-o", out, "--cache-dir", fs.dir]);
      expect(ran.code).toBe(0);
      expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    } finally {
      fs.unmount();
    }
  });
});

describe("what each command takes as REF", () => {
  test.each([
    ["inspect", "oci:./image:1"],
    ["tags", "oci:./image"],
    ["lock", "oci:./image"],
    ["rm", "oci:./image:1"],
  ])("%s %s: one line saying it takes registry references, exit 2", async (command, input) => {
    const ran = await runCli([command, input, "--cache-dir", join(tmp.path, "cache")], { HOME: tmp.path });
    expect(ran.code).toBe(2);
    expect(ran.stderr).toBe(
      `ocicache: error: Cannot ${command} "${input}": ${command} takes registry references only; an oci:DIR ` +
        "layout is read in place by pull, path and cat\n",
    );
  });
});

describe("the mirror with its upstream down", () => {
  test("a tag answered from its last known digest is counted in /metrics and shown on the status page", async () => {
    const upstream = startProxy(registry.url);
    const server = await startServe(tmp.path, upstream.host);
    try {
      const manifest = `http://${server.host}/v2/contract-${run}/app/manifests/1`;
      const accept = { Accept: "application/vnd.oci.image.index.v1+json" };
      expect((await fetch(manifest, { headers: accept })).status).toBe(200);
      await upstream.stop();
      const stale = await fetch(manifest, { headers: accept });
      expect(stale.status).toBe(200);
      expect(stale.headers.get("docker-content-digest")).toBe(image.indexDigest);
      const metrics = await (await fetch(`http://${server.host}/metrics`)).text();
      expect(metrics).toContain("ocicache_stale_tags_total 1\n");
      const page = await (await fetch(`http://${server.host}/`)).text();
      expect(page).toContain('<span id="stale-tags">1</span>');
      expect(page).toContain(`contract-${run}/app:1`);
    } finally {
      await server.stop();
    }
  });
});

describe("errors that teach (the CLI round)", () => {
  test("a mistyped flag suggests the flag; a reference with a scheme says to drop it", async () => {
    const typo = await runCli(["pull", "--otput", "out", "x/y:1"]);
    expect([typo.code, typo.stderr]).toEqual([
      2,
      'ocicache: error: Cannot parse arguments: unknown option "--otput" (did you mean --output?)\n',
    ]);
    const scheme = await runCli(["pull", `http://${registry.host}/contract-${run}/app:1`, "--cache-dir", tmp.path]);
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toContain("(a reference has no scheme: drop the http:// or https://)");
  });

  test("rm of a digest prefix too short to tell blobs apart, and ls of a cache that does not exist", async () => {
    const short = await runCli(["rm", "0ece", "--cache-dir", tmp.path]);
    expect([short.code, short.stderr]).toEqual([
      2,
      'ocicache: error: Cannot remove "0ece": a digest prefix needs at least 7 hex digits (ls prints 12)\n',
    ]);
    const missing = join(tmp.path, "nonexistent");
    expect((await runCli(["ls", "--cache-dir", missing])).stdout).toBe(`no cache at ${missing}\n`);
    expect((await runCli(["gc", "--cache-dir", join(tmp.path, "cache")])).code).toBe(0);
    expect((await runCli(["ls", "--cache-dir", join(tmp.path, "cache")])).stdout).toBe("cache is empty\n");
  });

  test("stats --help says what its limits count, not what gc removes with them", async () => {
    const help = (await runCli(["stats", "--help"])).stdout;
    expect(help).toContain("Count the bytes unused this long (default 30d)");
    expect(help).toContain("Count the bytes over SIZE (default 10GiB)");
    expect(help).not.toContain("Remove what was unused");
    expect((await runCli(["gc", "--help"])).stdout).toContain("Remove what was unused this long (default 30d)");
  });

  test("tags of a repository that does not exist names the repository, not a tag", async () => {
    const ran = await runCli(["tags", `${registry.host}/contract-${run}/nope`, "--cache-dir", tmp.path]);
    expect(ran.code).toBe(3);
    expect(ran.stderr).toContain(`"${registry.host}/contract-${run}/nope"`);
    expect(ran.stderr).not.toContain("nope:latest");
  });
});

describe("two pulls of one image at once", () => {
  test("the second says it waits for the first, naming its pid, and gets the same bytes", async () => {
    const slow = startProxy(registry.url, async (request, forward) =>
      new URL(request.url).pathname.includes("/blobs/") ? trickle(await forward(), 256 * 1024, 50) : forward(),
    );
    try {
      const ref = `${slow.host}/contract-${run}/app:1`;
      const cache = join(tmp.path, "shared");
      const first = Bun.spawn(["bun", CLI, "path", ref, "--role", "kernel", "--cache-dir", cache], {
        stdout: "pipe",
        stderr: "pipe",
      });
      while (slow.count("/blobs/", "GET") === 0) await Bun.sleep(10);
      const second = await runCli(["path", ref, "--role", "kernel", "--cache-dir", cache]);
      expect(second.code).toBe(0);
      expect(second.stderr).toContain(
        `ocicache: waiting for another ocicache (pid ${first.pid}) downloading ${ref} kernel`,
      );
      expect(await first.exited).toBe(0);
      expect(readFileSync(second.stdout.trim())).toEqual(Buffer.from(image.manifests[host].files.kernel));
    } finally {
      await slow.stop();
    }
  });
});
