import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { HOST_ARCH as host, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { corrupt, startProxy } from "../helpers/proxy.ts";
import { type RegistryHandle, startRegistry } from "../helpers/registry.ts";
import { startTokenServer, type TokenServer } from "../helpers/token.ts";

const tmp = useTempDir("mirrors");

/** Write the config file the CLI reads (under XDG_CONFIG_HOME, below). */
function writeConfig(config: object): void {
  mkdirSync(join(tmp.path, "config", "ocicache"), { recursive: true });
  writeFileSync(join(tmp.path, "config", "ocicache", "config.json"), JSON.stringify(config));
}

const ocicache = (args: string[], env: Record<string, string> = {}) =>
  runCli(args, {
    OCICACHE_DIR: join(tmp.path, "cache"),
    XDG_CONFIG_HOME: join(tmp.path, "config"),
    OCICACHE_AUTO_CLEAN_INTERVAL: "0",
    DOCKER_CONFIG: join(tmp.path, "docker"),
    ...env,
  });

function expectFiles(out: string, image: SampleImage): void {
  expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
  expect(readFileSync(join(out, "initrd"))).toEqual(Buffer.from(image.manifests[host].files.initrd));
}

describe("a distribution registry in proxy mode as the shared tier", () => {
  test("the first pull goes through the mirror; with the origin down a fresh cache still pulls", async () => {
    const origin = await startRegistry();
    const mirror = await startRegistry({ proxy: origin.url });
    const image = await pushSampleImage(origin.url, "team/app", "1", { format: "kraftkit" });
    const originSeen = startProxy(origin.url);
    const mirrorSeen = startProxy(mirror.url);
    const ref = `${originSeen.host}/team/app:1`;
    try {
      const first = await ocicache(["pull", ref, "-o", join(tmp.path, "one"), "--mirror", mirrorSeen.host]);
      expect(first.code).toBe(0);
      expect(first.messages).toBe("");
      expectFiles(join(tmp.path, "one"), image);
      expect(mirrorSeen.count("/blobs/", "GET")).toBeGreaterThanOrEqual(2);
      expect(originSeen.requests).toEqual([]);

      await origin.stop();
      await originSeen.stop();
      const second = await ocicache([
        "pull",
        ref,
        "-o",
        join(tmp.path, "two"),
        "--mirror",
        mirrorSeen.host,
        "--cache-dir",
        join(tmp.path, "second-machine"),
      ]);
      expect(second.code).toBe(0);
      expectFiles(join(tmp.path, "two"), image);
    } finally {
      await mirrorSeen.stop();
      await mirror.stop();
      await origin.stop().catch(() => {});
    }
  });

  test("with the mirror stopped, the origin serves, with one warning", async () => {
    const origin = await startRegistry();
    const mirror = await startRegistry({ proxy: origin.url });
    const image = await pushSampleImage(origin.url, "team/app", "1", { format: "spec", romBytes: [700] });
    await mirror.stop();
    try {
      const pulled = await ocicache(["pull", image.ref, "-o", join(tmp.path, "out"), "--mirror", mirror.host]);
      expect(pulled.code).toBe(0);
      expectFiles(join(tmp.path, "out"), image);
      const warnings = pulled.messages.trim().split("\n");
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`Cannot use the mirror "${mirror.host}"`);
      expect(warnings[0]).toContain("connection refused");
    } finally {
      await origin.stop();
    }
  });
});

describe("mirrors that misbehave, and the config's per-registry hosts", () => {
  let origin: RegistryHandle;
  let image: SampleImage;
  beforeAll(async () => {
    origin = await startRegistry();
    image = await pushSampleImage(origin.url, "team/app", "1", { format: "kraftkit", kernelBytes: 200_000 });
  });
  afterAll(() => origin.stop());

  test("a mirror that serves wrong bytes is caught by the digest check; the origin serves", async () => {
    const liar = startProxy(origin.url, async (request, forward) => {
      const response = await forward();
      return request.method === "GET" && request.url.includes("/blobs/") ? corrupt(response, 5) : response;
    });
    const originSeen = startProxy(origin.url);
    try {
      const ref = `${originSeen.host}/team/app:1`;
      const pulled = await ocicache(["pull", ref, "-o", join(tmp.path, "out"), "--mirror", liar.host]);
      expect(pulled.code).toBe(0);
      expectFiles(join(tmp.path, "out"), image);
      expect(pulled.messages.trim().split("\n")).toHaveLength(1);
      expect(pulled.stderr).toContain(`Cannot use the mirror "${liar.host}"`);
      expect(pulled.stderr).toContain("digest");
      for (const layer of image.manifests[host].layers)
        expect(originSeen.count(`/blobs/${layer.digest}`, "GET")).toBe(1);
      expect((await ocicache(["verify"])).code).toBe(0);
    } finally {
      await liar.stop();
      await originSeen.stop();
    }
  });

  test("a mirror configured for pull only serves blobs; the origin resolves the tag", async () => {
    const mirrorSeen = startProxy(origin.url);
    const originSeen = startProxy(origin.url);
    try {
      writeConfig({
        registries: { [originSeen.host]: { mirrors: [{ host: mirrorSeen.host, capabilities: ["pull"] }] } },
      });
      const pulled = await ocicache(["pull", `${originSeen.host}/team/app:1`, "-o", join(tmp.path, "out")]);
      expect(pulled.code).toBe(0);
      expectFiles(join(tmp.path, "out"), image);
      expect(originSeen.requests.map((r) => r.path)).toEqual(["/v2/team/app/manifests/1"]);
      expect(mirrorSeen.count("/manifests/1")).toBe(0);
      expect(mirrorSeen.count("/blobs/", "GET")).toBeGreaterThanOrEqual(2);
    } finally {
      await mirrorSeen.stop();
      await originSeen.stop();
    }
  });

  test("a mirror served under a path, like a Harbor proxy-cache project (path /v2/<project>)", async () => {
    const seen: string[] = [];
    const harbor = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        const match = /^\/v2\/unikraft-proxy(\/.*)$/.exec(url.pathname);
        if (match === null) return new Response(JSON.stringify({ errors: [{ code: "NOT_FOUND" }] }), { status: 404 });
        seen.push(match[1]!);
        const headers = new Headers(request.headers);
        headers.delete("host");
        return fetch(`${origin.url}/v2${match[1]}`, { method: request.method, headers, decompress: false });
      },
    });
    const originSeen = startProxy(origin.url);
    try {
      writeConfig({
        registries: {
          [originSeen.host]: { mirrors: [{ host: `127.0.0.1:${harbor.port}`, path: "/v2/unikraft-proxy" }] },
        },
      });
      const pulled = await ocicache(["pull", `${originSeen.host}/team/app:1`, "-o", join(tmp.path, "out")]);
      expect(pulled.code).toBe(0);
      expect(pulled.messages).toBe("");
      expectFiles(join(tmp.path, "out"), image);
      expect(seen).toContain("/team/app/manifests/1");
      expect(originSeen.requests).toEqual([]);
    } finally {
      await harbor.stop(true);
      await originSeen.stop();
    }
  });

  test("an unknown key or a bad mirror host in the config is exit 2 naming it", async () => {
    writeConfig({ registries: { [origin.host]: { mirrors: [{ host: "not a host" }] } } });
    const bad = await ocicache(["pull", image.ref]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`registries["${origin.host}"].mirrors[0].host: expected a registry host`);
  });
});

describe("a TLS registry with a private CA (made with openssl)", () => {
  let secure: RegistryHandle;
  let image: SampleImage;
  let ca: string;
  beforeAll(async () => {
    const pki = mkdtempSync(join(tmpdir(), "ocicache-pki-"));
    const openssl = (...args: string[]) =>
      expect(Bun.spawnSync(["openssl", ...args], { cwd: pki, stderr: "pipe" }).exitCode).toBe(0);
    openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=ocicache-test-ca",
    );
    openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=127.0.0.1",
    );
    writeFileSync(join(pki, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
    openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "1",
      "-extfile",
      "ext.cnf",
    );
    ca = join(pki, "ca.pem");
    secure = await startRegistry({ tls: { certificate: join(pki, "server.pem"), key: join(pki, "server.key") } });
    image = await pushSampleImage(secure.url, "secure/app", "1", { format: "kraftkit", ca: readFileSync(ca, "utf8") });
  });
  afterAll(() => secure.stop());

  /** Loopback hosts are plain HTTP unless the config says otherwise. */
  function tlsConfig(extra: Record<string, unknown> = {}): void {
    writeConfig({ registries: { [secure.host]: { insecure: false, ...extra } } });
  }

  test("is refused without the CA, with exit 5 and the option that fixes it", async () => {
    tlsConfig();
    const refused = await ocicache(["pull", image.ref]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain(`Cannot verify the TLS certificate of "${secure.host}"`);
    expect(refused.stderr).toContain("--ca-file");
  });

  test("is pulled with --ca-file, and with the host's ca in the config", async () => {
    tlsConfig();
    const pulled = await ocicache(["pull", image.ref, "-o", join(tmp.path, "one"), "--ca-file", ca]);
    expect(pulled.code).toBe(0);
    expectFiles(join(tmp.path, "one"), image);
    tlsConfig({ ca });
    const viaConfig = await ocicache([
      "pull",
      image.ref,
      "-o",
      join(tmp.path, "two"),
      "--cache-dir",
      join(tmp.path, "other"),
    ]);
    expect(viaConfig.code).toBe(0);
    expectFiles(join(tmp.path, "two"), image);
  });
});

describe("credentials", () => {
  let secured: RegistryHandle;
  let image: SampleImage;
  beforeAll(async () => {
    const htpasswd = join(tmpdir(), `ocicache-helper-htpasswd-${Math.random().toString(36).slice(2)}`);
    expect(Bun.spawnSync(["htpasswd", "-Bbc", htpasswd, "erin", "helper-secret-42"]).exitCode).toBe(0);
    secured = await startRegistry({ htpasswd });
    image = await pushSampleImage(secured.url, "private/app", "1", {
      format: "kraftkit",
      headers: { Authorization: `Basic ${btoa("erin:helper-secret-42")}` },
    });
  });
  afterAll(() => secured.stop());

  function helper(secret: string): Record<string, string> {
    const bin = join(tmp.path, "bin");
    mkdirSync(bin, { recursive: true });
    const script = join(bin, "docker-credential-ocitest");
    writeFileSync(
      script,
      [
        "#!/bin/sh",
        '[ "$1" = get ] || exit 1',
        "read server",
        `[ "$server" = "${secured.host}" ] || { echo "credentials not found in native keychain"; exit 1; }`,
        `printf '{"ServerURL":"%s","Username":"erin","Secret":"${secret}"}' "$server"`,
        "",
      ].join("\n"),
    );
    chmodSync(script, 0o755);
    mkdirSync(join(tmp.path, "docker"), { recursive: true });
    writeFileSync(
      join(tmp.path, "docker", "config.json"),
      JSON.stringify({ credHelpers: { [secured.host]: "ocitest" } }),
    );
    return { PATH: `${bin}:${process.env.PATH}` };
  }

  test("a credential helper on the PATH is used, and its secret appears in no output", async () => {
    const pulled = await ocicache(
      ["pull", image.ref, "-o", join(tmp.path, "out"), "--debug", "--json"],
      helper("helper-secret-42"),
    );
    expect(pulled.code).toBe(0);
    expectFiles(join(tmp.path, "out"), image);
    expect(pulled.stdout + pulled.stderr).not.toContain("helper-secret-42");
  });

  test("a helper whose secret is refused: exit 6, the secret in no output", async () => {
    const refused = await ocicache(["pull", image.ref, "--debug"], helper("stale-secret-99"));
    expect(refused.code).toBe(6);
    expect(refused.stdout + refused.stderr).not.toContain("stale-secret-99");
    expect(refused.stdout + refused.stderr).not.toContain(btoa("erin:stale-secret-99"));
  });

  test("credentials for a host in the config file", async () => {
    writeConfig({ registries: { [secured.host]: { username: "erin", password: "helper-secret-42" } } });
    const pulled = await ocicache(["pull", image.ref, "-o", join(tmp.path, "out")]);
    expect(pulled.code).toBe(0);
    expectFiles(join(tmp.path, "out"), image);
  });
});

describe("the bearer-token flow against the real registry in auth.token mode", () => {
  let tokens: TokenServer;
  let registry: RegistryHandle;
  let open: SampleImage;
  let closed: SampleImage;
  beforeAll(async () => {
    tokens = startTokenServer((repository, user) => {
      if (repository.startsWith("public/")) return ["pull", "push"];
      if (user?.username === "frank" && user.password === "token-secret-7") return ["pull"];
      return undefined;
    });
    registry = await startRegistry({
      token: {
        realm: tokens.realm,
        service: tokens.service,
        issuer: tokens.issuer,
        rootCertBundle: tokens.certificate,
      },
    });
    const push = (name: string) => ({ Authorization: `Bearer ${tokens.tokenFor(name, ["pull", "push"])}` });
    open = await pushSampleImage(registry.url, "public/app", "1", { format: "kraftkit", headers: push("public/app") });
    closed = await pushSampleImage(registry.url, "private/app", "1", {
      format: "kraftkit",
      headers: push("private/app"),
    });
  });
  afterAll(async () => {
    await registry.stop();
    await tokens.stop();
  });

  test("anonymous pull where the token server allows it", async () => {
    const pulled = await ocicache(["pull", open.ref, "-o", join(tmp.path, "out")]);
    expect(pulled.code).toBe(0);
    expectFiles(join(tmp.path, "out"), open);
    const request = tokens.requests.at(-1)!;
    expect(request.scope).toBe("repository:public/app:pull");
    expect(request.user).toBeUndefined();
  });

  test("credentialed pull where it requires them", async () => {
    mkdirSync(join(tmp.path, "docker"), { recursive: true });
    writeFileSync(
      join(tmp.path, "docker", "config.json"),
      JSON.stringify({ auths: { [registry.host]: { auth: btoa("frank:token-secret-7") } } }),
    );
    const pulled = await ocicache(["pull", closed.ref, "-o", join(tmp.path, "out")]);
    expect(pulled.code).toBe(0);
    expectFiles(join(tmp.path, "out"), closed);
    expect(tokens.requests.at(-1)!.user).toBe("frank");
  });

  test("exit 6 when the token server refuses", async () => {
    const refused = await ocicache(["pull", closed.ref]);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toContain("the token server refused anonymous access");
  });
});
