import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI } from "../helpers/cli.ts";
import { CAN_MOUNT, RUN_ID } from "../helpers/env.ts";
import { pushSampleImage } from "../helpers/images.ts";
import { mountTmpfs } from "../helpers/mount.ts";
import { startProxy } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry, startRegistry } from "../helpers/registry.ts";

let registry: RegistryHandle;
let secured: RegistryHandle;
beforeAll(async () => {
  registry = await sharedRegistry();
  const htpasswd = join(tmpdir(), `ocicache-doctor-htpasswd-${Math.random().toString(36).slice(2)}`);
  expect(Bun.spawnSync(["htpasswd", "-Bbc", htpasswd, "gina", "doctor-secret"]).exitCode).toBe(0);
  secured = await startRegistry({ htpasswd });
});
afterAll(async () => {
  await registry.stop();
  await secured.stop();
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-doctor-"));
  mkdirSync(join(dir, "config", "ocicache"), { recursive: true });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function doctor(config: unknown, env: Record<string, string> = {}, args: string[] = []) {
  const text = typeof config === "string" ? config : JSON.stringify(config);
  writeFileSync(join(dir, "config", "ocicache", "config.json"), text);
  const proc = Bun.spawn(["bun", CLI, "doctor", ...args, "--json"], {
    env: {
      ...process.env,
      OCICACHE_DIR: join(dir, "cache"),
      XDG_CONFIG_HOME: join(dir, "config"),
      DOCKER_CONFIG: join(dir, "docker"),
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { code, checks: JSON.parse(stdout) as Array<{ subject: string; ok: boolean; detail: string; fix?: string }> };
}

describe("ocicache doctor", () => {
  test("all well: the cache, the config and each registry and mirror answer; exit 0", async () => {
    const { code, checks } = await doctor({
      registries: {
        [registry.host]: { mirrors: [{ host: registry.host.replace(/:\d+$/, ":1"), capabilities: ["pull"] }] },
      },
    });
    const byHost = (host: string) => checks.find((c) => c.detail.includes(host));
    expect(checks[0]).toMatchObject({ subject: "cache", ok: true });
    expect(checks[0]!.detail).toContain("free, writable");
    expect(checks[1]).toMatchObject({ subject: "config", ok: true });
    expect(byHost(registry.host)).toMatchObject({ subject: "registry", ok: true });
    expect(byHost("127.0.0.1:1")).toMatchObject({ subject: "registry", ok: false });
    expect(byHost("127.0.0.1:1")!.fix).toContain("check the address");
    expect(code).toBe(1);
  });

  test("credentials refused by a registry are reported with what to fix", async () => {
    mkdirSync(join(dir, "docker"), { recursive: true });
    writeFileSync(
      join(dir, "docker", "config.json"),
      JSON.stringify({ auths: { [secured.host]: { auth: btoa("gina:wrong") } } }),
    );
    const { code, checks } = await doctor({ registries: { [secured.host]: {} } });
    const check = checks.find((c) => c.detail.includes(secured.host))!;
    expect(check.ok).toBe(false);
    expect(check.fix).toContain("credentials");
    expect(JSON.stringify(checks)).not.toContain("gina:wrong");
    expect(code).toBe(1);
    writeFileSync(
      join(dir, "docker", "config.json"),
      JSON.stringify({ auths: { [secured.host]: { auth: btoa("gina:doctor-secret") } } }),
    );
    expect((await doctor({ registries: { [secured.host]: {} } })).code).toBe(0);
  });

  test("a 401 from a redirect target of /v2/ gets no credentials: its realm is never asked (finding 1)", async () => {
    const thief = startProxy(registry.url, () => Response.json({ token: "stolen" }));
    const elsewhere = startProxy(
      registry.url,
      () =>
        new Response(null, {
          status: 401,
          headers: { "WWW-Authenticate": `Basic realm="${thief.url}/token"` },
        }),
    );
    const origin = startProxy(
      registry.url,
      () => new Response(null, { status: 307, headers: { Location: `${elsewhere.url}/v2/` } }),
    );
    try {
      mkdirSync(join(dir, "docker"), { recursive: true });
      writeFileSync(
        join(dir, "docker", "config.json"),
        JSON.stringify({ auths: { [origin.host]: { auth: btoa("gina:doctor-secret") } } }),
      );
      const { code, checks } = await doctor({ registries: { [origin.host]: {} } });
      const check = checks.find((c) => c.detail.includes(origin.host))!;
      expect(check.ok).toBe(false);
      expect(check.detail).toContain(`they are sent only to "${origin.host}"`);
      expect(code).toBe(1);
      expect(thief.requests).toEqual([]);
      const sent = [...elsewhere.requests, ...thief.requests].map((r) => r.headers.authorization);
      expect(sent.filter((a) => a !== undefined)).toEqual([]);
    } finally {
      await Promise.all([thief.stop(), elsewhere.stop(), origin.stop()]);
    }
  });

  test("a registry that demands credentials when none are configured is reported, not called ok", async () => {
    const { code, checks } = await doctor({ registries: { [secured.host]: {} } });
    const check = checks.find((c) => c.detail.includes(secured.host))!;
    expect(check.ok).toBe(false);
    expect(check.detail).toContain("demands credentials and none are configured for it: pulls will fail (exit 6)");
    expect(check.fix).toStartWith(`docker login ${secured.host}`);
    expect(code).toBe(1);
    const plain = await doctor({ registries: { [registry.host]: {} } });
    expect(plain.checks.find((c) => c.detail.includes(registry.host))!.detail).toContain("asks for no credentials");
  });

  test("a config file that does not load is diagnosed, every problem listed; the other checks still run", async () => {
    const config = {
      maxAgee: "3d",
      concurrency: 1000,
      registries: { "ghcr.io": { mirrors: [{ hots: "mirror.example" }] } },
    };
    const { code, checks } = await doctor(config);
    expect(code).toBe(1);
    expect(checks[0]).toMatchObject({ subject: "cache", ok: true });
    const problems = checks.filter((c) => c.subject === "config").map((c) => c.detail.split(": ").slice(1).join(": "));
    expect(problems).toContain('maxAgee: unknown key (did you mean "maxAge"?)');
    expect(problems.some((p) => p.startsWith("concurrency: "))).toBe(true);
    expect(problems).toContain('registries["ghcr.io"].mirrors[0].hots: unknown key (did you mean "host"?)');
    const broken = await doctor('{\n  "maxAge": "3d",\n  "offline": tru\n}');
    expect(broken.checks[1]!.detail).toContain("it is not valid JSON: line 3, column 14: unexpected");
  });

  test("the signature policy of the config is read whole and each key loaded: each problem is reported", async () => {
    const key = join(dir, "cosign.pub");
    const made = Bun.spawnSync([
      "openssl",
      "ecparam",
      "-genkey",
      "-name",
      "prime256v1",
      "-noout",
      "-out",
      `${key}.key`,
    ]);
    expect(made.exitCode).toBe(0);
    expect(Bun.spawnSync(["openssl", "ec", "-in", `${key}.key`, "-pubout", "-out", key]).exitCode).toBe(0);
    const policy = (body: object) => {
      const path = join(dir, `policy-${Math.random()}.json`);
      writeFileSync(path, JSON.stringify(body));
      return path;
    };
    const signed = (keyPath: string) => ({ type: "sigstoreSigned", keyPath });
    const good = await doctor({ policy: policy({ default: [signed(key)] }) });
    expect(good.checks.find((c) => c.subject === "policy")).toMatchObject({ ok: true });
    expect(good.code).toBe(0);
    const missing = policy({ default: [signed(key)], transports: { docker: { x: [signed(join(dir, "gone.pub"))] } } });
    const keyGone = await doctor({ policy: missing });
    expect(keyGone.code).toBe(1);
    expect(keyGone.checks.filter((c) => c.subject === "policy")).toEqual([
      expect.objectContaining({ ok: false, detail: expect.stringContaining(`Cannot read the policy's key "${dir}`) }),
    ]);
    const gpg = await doctor({ policy: policy({ default: [{ type: "signedBy", keyType: "GPGKeys" }] }) });
    expect(gpg.checks.find((c) => c.subject === "policy")!.detail).toContain('"signedBy" is not implemented');
    const absent = await doctor({}, {}, ["--policy", join(dir, "nowhere.json")]);
    expect(absent.checks.find((c) => c.subject === "policy")!.detail).toContain("Cannot read the policy");
  });

  test("doctor REF checks its registry and that it resolves; doctor HOST checks that registry only", async () => {
    const image = await pushSampleImage(registry.url, `doctor-${RUN_ID}/app`, "1", { format: "kraftkit" });
    const found = await doctor({ registries: { [secured.host]: {} } }, {}, [image.ref]);
    expect(found.code).toBe(0);
    expect(found.checks.map((c) => c.subject)).toEqual(["cache", "config", "registry", "image"]);
    expect(found.checks[3]!.detail).toBe(`${image.ref} resolves to ${image.indexDigest}`);
    const missing = await doctor({}, {}, [`${registry.host}/doctor-${RUN_ID}/app:nope`]);
    expect(missing.code).toBe(1);
    expect(missing.checks[3]).toMatchObject({ subject: "image", ok: false });
    expect(missing.checks[3]!.fix).toContain(`ocicache tags ${registry.host}/doctor-${RUN_ID}/app`);
    const host = await doctor({}, {}, [secured.host]);
    expect(host.code).toBe(1);
    expect(host.checks.map((c) => [c.subject, c.ok])).toEqual([
      ["cache", true],
      ["config", true],
      ["registry", false],
    ]);
    expect(host.checks[2]!.detail).toContain("demands credentials and none are configured");
  });

  test("a value every command refuses (maxAge forever) is a problem for doctor too, with the same words", async () => {
    const { code, checks } = await doctor({ maxAge: "forever", maxSize: "10GiB" });
    expect(code).toBe(1);
    const problems = checks.filter((c) => c.subject === "config");
    expect(problems.map((c) => c.ok)).toEqual([false]);
    expect(problems[0]!.detail).toContain('"maxAge" "forever": expected a duration');
    const file = join(dir, "config", "ocicache", "config.json");
    const ls = Bun.spawnSync(["bun", CLI, "ls", "--config", file], { env: { ...process.env, OCICACHE_DIR: dir } });
    expect(ls.exitCode).toBe(2);
    expect(ls.stderr.toString()).toContain('"maxAge" in');
  });

  test.skipIf(!CAN_MOUNT)(
    "a cache that cannot be written is reported with what to fix (mounts a tmpfs: root only)",
    async () => {
      const fs = mountTmpfs(1024 * 1024);
      try {
        fs.readOnly();
        const { code, checks } = await doctor({}, { OCICACHE_DIR: join(fs.dir, "cache") });
        expect(checks[0]).toMatchObject({ subject: "cache", ok: false });
        expect(checks[0]!.detail).toContain("read-only file system");
        expect(code).toBe(1);
      } finally {
        fs.unmount();
      }
    },
  );
});
