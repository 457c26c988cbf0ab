import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestOf } from "../../lib/oci/digest.ts";
import { CLI } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type ProxyHandle, startProxy } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const tmp = useTempDir("lock");
let registry: RegistryHandle;
let proxy: ProxyHandle;
let first: SampleImage;
const repo = `lock-${run}/nginx`;

beforeAll(async () => {
  registry = await sharedRegistry();
  proxy = startProxy(registry.url);
  first = await pushSampleImage(registry.url, repo, "1.25", { format: "spec", romBytes: [500] });
});
afterAll(async () => {
  await proxy.stop();
  await registry.stop();
});

/** Run the CLI in the test's directory, so that `ocicache.lock` lands there. */
async function ocicache(args: string[]) {
  const proc = Bun.spawn(["bun", CLI, ...args], {
    cwd: tmp.path,
    env: { ...process.env, OCICACHE_DIR: join(tmp.path, "cache") },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

describe("ocicache lock", () => {
  const ref = () => `${proxy.host}/${repo}:1.25`;
  const lockPath = () => join(tmp.path, "ocicache.lock");

  test("lock, a new push to the tag, the locked bytes; --check names the tag; offline from the cache", async () => {
    const locked = await ocicache(["lock", ref(), "-q"]);
    expect([locked.code, locked.stdout]).toEqual([0, `locked ${ref()} ${first.indexDigest}\n`]);
    const lock = JSON.parse(readFileSync(lockPath(), "utf8"));
    expect(Object.keys(lock)).toEqual(["lockfileVersion", "references"]);
    const entry = lock.references[ref()];
    expect(entry.digest).toBe(first.indexDigest);
    const mine = entry.platforms.find((p: { platform: { architecture: string } }) => p.platform.architecture === host);
    expect(mine.manifest).toBe(first.manifests[host].digest);
    expect(mine.files).toEqual([
      {
        role: "kernel",
        name: "kernel",
        digest: digestOf(first.manifests[host].files.kernel),
        bytes: expect.any(Number),
      },
      {
        role: "initrd",
        name: "initrd",
        digest: digestOf(first.manifests[host].files.initrd),
        bytes: expect.any(Number),
      },
      { role: "rom", name: "rom0", digest: first.manifests[host].layers.at(-1)!.digest, bytes: 500 },
    ]);
    expect(entry.platforms).toHaveLength(2);

    // The tag moves on the registry.
    const second = await pushSampleImage(registry.url, repo, "1.25", { format: "spec", romBytes: [600] });
    const asked = proxy.count("/manifests/1.25");
    const pulled = await ocicache(["pull", ref(), "--lock-file", "ocicache.lock", "-o", "out", "-q"]);
    expect(pulled.code).toBe(0);
    expect(readFileSync(join(tmp.path, "out", "kernel"))).toEqual(Buffer.from(first.manifests[host].files.kernel));
    expect(proxy.count("/manifests/1.25")).toBe(asked);

    const check = await ocicache(["lock", "--check"]);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(`moved ${ref()}: ${first.indexDigest} -> ${second.indexDigest}\n`);

    // The registry is gone: the locked reference is answered from the cache, and --check --offline compares the
    // lock with what the cache last knew (the locked digest: the cache has not seen the move), asking nothing.
    await proxy.stop();
    const offline = await ocicache(["lock", "--check", "--offline"]);
    expect([offline.code, offline.stdout]).toEqual([
      0,
      `1 locked tag in ocicache.lock: 0 moved, as the cache last knew them\n`,
    ]);
    const path = await ocicache(["path", ref(), "--role", "initrd", "--lock-file", "ocicache.lock"]);
    expect([path.code, path.stderr]).toEqual([0, ""]);
    expect(readFileSync(path.stdout.trim())).toEqual(Buffer.from(first.manifests[host].files.initrd));
    proxy = startProxy(registry.url, undefined, Number(proxy.host.split(":")[1]));

    const updated = await ocicache(["lock", "--update", "-q"]);
    expect(updated.stdout).toBe(`updated ${ref()} ${first.indexDigest} -> ${second.indexDigest}\n`);
    expect((await ocicache(["lock", "--check"])).code).toBe(0);
    const now = await ocicache(["path", ref(), "--role", "kernel", "--lock-file", "ocicache.lock"]);
    expect(readFileSync(now.stdout.trim())).toEqual(Buffer.from(second.manifests[host].files.kernel));
  });

  test("--locked: a reference not locked is not found; --locked alone takes ./ocicache.lock", async () => {
    const other = `${proxy.host}/${repo}:other`;
    writeFileSync(join(tmp.path, "ocicache.lock"), JSON.stringify({ lockfileVersion: 1, references: {} }));
    const notLocked = await ocicache(["pull", other, "--lock-file", "ocicache.lock", "--locked"]);
    expect(notLocked.code).toBe(3);
    expect(notLocked.stderr).toContain(`it is not in the lock file "ocicache.lock" (--locked)`);
    const byDefault = await ocicache(["pull", other, "--locked"]);
    expect(byDefault.code).toBe(3);
    expect(byDefault.stderr).toContain(`it is not in the lock file "ocicache.lock" (--locked)`);
    rmSync(join(tmp.path, "ocicache.lock"));
    const none = await ocicache(["pull", other, "--locked"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Cannot read the lock file "ocicache.lock": it does not exist');
    writeFileSync(join(tmp.path, "bad.lock"), JSON.stringify({ lockfileVersion: 2, references: {} }));
    const bad = await ocicache(["pull", other, "--lock-file", "bad.lock"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"lockfileVersion" is not 1');
    expect((await ocicache(["lock", "--update", other])).code).toBe(2);
  });

  test("a malformed lock file is refused in one line, nothing pulled, the file left as it is (finding 6)", async () => {
    const name = `${proxy.host}/${repo}:1.25`;
    const digest = `sha256:${"a".repeat(64)}`;
    const text = JSON.stringify({
      lockfileVersion: 1,
      references: { [name]: { digest, platforms: [{ platform: null, manifest: digest, files: [null] }] } },
    });
    writeFileSync(join(tmp.path, "ocicache.lock"), text);
    const before = proxy.requests.length;
    for (const args of [
      ["lock", "--update"],
      ["pull", name, "--lock-file", "ocicache.lock"],
    ]) {
      const ran = await ocicache(args);
      expect(ran.code).toBe(2);
      expect(ran.stderr).toStartWith('ocicache: error: Cannot read the lock file "');
      expect(ran.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(proxy.requests.length).toBe(before);
    expect(readFileSync(join(tmp.path, "ocicache.lock"), "utf8")).toBe(text);
  });

  test("lock --platform records only the platform a build targets, and --update keeps to it", async () => {
    const file = join(tmp.path, "one.lock");
    const locked = await ocicache(["lock", ref(), "--lock-file", file, "--platform", `linux/${host}`, "-q"]);
    expect(locked.code).toBe(0);
    const platforms = () =>
      JSON.parse(readFileSync(file, "utf8")).references[ref()].platforms.map(
        (p: { platform: { architecture: string } }) => p.platform.architecture,
      );
    expect(platforms()).toEqual([host]);
    expect((await ocicache(["lock", "--update", "--lock-file", file, "-q"])).code).toBe(0);
    expect(platforms()).toEqual([host]);
    expect((await ocicache(["lock", ref(), "--lock-file", file, "-q"])).code).toBe(0);
    expect(platforms()).toHaveLength(2);
  });
});
