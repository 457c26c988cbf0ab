import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthError, DigestMismatchError, IntegrityError, NotFoundError } from "../../../lib/errors.ts";
import { type Digest, digestOf } from "../../../lib/oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../../../lib/oci/limits.ts";
import { parseReference } from "../../../lib/oci/reference.ts";
import { parseChallenge } from "../../../lib/registry/challenge.ts";
import { RegistryClient } from "../../../lib/registry/client.ts";
import { findCredentials } from "../../../lib/registry/credentials.ts";
import { RUN_ID as run } from "../../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../../helpers/images.ts";
import { type ProxyHandle, startProxy } from "../../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry, startRegistry } from "../../helpers/registry.ts";

let registry: RegistryHandle;
let image: SampleImage;
const dir = mkdtempSync(join(tmpdir(), "ocicache-registry-test-"));

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `registry-${run}/app`, "v1", { format: "kraftkit" });
});
afterAll(async () => {
  await registry.stop();
  rmSync(dir, { recursive: true, force: true });
});

const fast = { backoffMs: 5 };
const refVia = (host: string) => parseReference(`${host}/registry-${run}/app:v1`);
const kernelLayer = () => image.manifests.amd64.layers[0]!;

function dockerConfig(auths: Record<string, unknown>): string {
  const configDir = mkdtempSync(join(dir, "docker-"));
  writeFileSync(join(configDir, "config.json"), JSON.stringify({ auths }));
  return configDir;
}

describe("RegistryClient against the real registry", () => {
  test("GETs a manifest by tag, checked against Docker-Content-Digest", async () => {
    const client = new RegistryClient(fast);
    const manifest = await client.getManifest(refVia(registry.host), "v1");
    expect(manifest.digest as string).toBe(image.indexDigest);
    expect(manifest.mediaType).toBe("application/vnd.oci.image.index.v1+json");
  });

  test("HEADs a tag to learn its digest", async () => {
    const head = await new RegistryClient(fast).headManifest(refVia(registry.host), "v1");
    expect(head.digest as string).toBe(image.indexDigest);
  });

  test("a HEAD without Docker-Content-Digest falls back to a GET of the manifest", async () => {
    const proxy = startProxy(registry.url, async (_request, forward) => {
      const response = await forward();
      const headers = new Headers(response.headers);
      headers.delete("docker-content-digest");
      return new Response(response.body, { status: response.status, headers });
    });
    try {
      const head = await new RegistryClient(fast).headManifest(refVia(proxy.host), "v1");
      expect(head.digest as string).toBe(image.indexDigest);
      expect(proxy.requests.map((r) => r.method)).toEqual(["HEAD", "GET"]);
    } finally {
      await proxy.stop();
    }
  });

  test("an unknown tag and an unknown blob are not found (exit 3)", async () => {
    const client = new RegistryClient(fast);
    const error = await client.getManifest(refVia(registry.host), "nope").catch((e) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.exitCode).toBe(3);
    expect(error.message).toContain("MANIFEST_UNKNOWN");
    await expect(client.getBlob(refVia(registry.host), `sha256:${"0".repeat(64)}` as Digest)).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  test("GETs the rest of a blob with Range", async () => {
    const layer = kernelLayer();
    const { response } = await new RegistryClient(fast).getBlob(refVia(registry.host), layer.digest as Digest, 100);
    expect(response.status).toBe(206);
    expect(Buffer.from(await response.arrayBuffer())).toEqual(
      Buffer.from(image.manifests.amd64.files.kernel.subarray(100)),
    );
  });
});

describe("basic auth (the registry's htpasswd)", () => {
  let secured: RegistryHandle;
  beforeAll(async () => {
    const htpasswd = join(dir, "htpasswd");
    const made = Bun.spawnSync(["htpasswd", "-Bbc", htpasswd, "alice", "s3cret-pass"]);
    expect(made.exitCode).toBe(0);
    secured = await startRegistry({ htpasswd });
    const auth = `Basic ${btoa("alice:s3cret-pass")}`;
    await pushSampleImage(secured.url, `registry-${run}/app`, "v1", {
      format: "kraftkit",
      headers: { Authorization: auth },
    });
  });
  afterAll(() => secured.stop());

  test("uses the credentials of the docker config.json in $DOCKER_CONFIG", async () => {
    const configDir = dockerConfig({ [secured.host]: { auth: btoa("alice:s3cret-pass") } });
    const client = new RegistryClient({
      ...fast,
      credentials: (h) => findCredentials(h, { env: { DOCKER_CONFIG: configDir } }),
    });
    const manifest = await client.getManifest(refVia(secured.host), "v1");
    expect(manifest.mediaType).toBe("application/vnd.oci.image.index.v1+json");
  });

  test("wrong credentials are refused with exit 6 and the secret in no message", async () => {
    const configDir = dockerConfig({ [`http://${secured.host}/v2/`]: { username: "alice", password: "wrong-secret" } });
    const client = new RegistryClient({
      ...fast,
      credentials: (h) => findCredentials(h, { env: { DOCKER_CONFIG: configDir } }),
    });
    const error = await client.getManifest(refVia(secured.host), "v1").catch((e) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(error.exitCode).toBe(6);
    expect(error.message).not.toContain("wrong-secret");
  });

  test("no credentials at all are refused with exit 6", async () => {
    const client = new RegistryClient({ ...fast, credentials: () => undefined });
    const error = await client.getManifest(refVia(secured.host), "v1").catch((e) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(error.message).toContain("requires credentials");
  });
});

describe("the bearer-token challenge (a token-server fixture in front of the registry)", () => {
  let proxy: ProxyHandle;
  const tokenRequests: URL[] = [];
  let requireCredentials = false;
  beforeAll(() => {
    proxy = startProxy(registry.url, (request, forward) => {
      const url = new URL(request.url);
      if (url.pathname === "/token") {
        tokenRequests.push(url);
        const basic = request.headers.get("authorization");
        if (requireCredentials && basic !== `Basic ${btoa("bob:token-pass")}`)
          return new Response("denied", { status: 401 });
        return Response.json({ token: `tok-${url.searchParams.get("scope")}` });
      }
      const scope = `repository:registry-${run}/app:pull`;
      if (request.headers.get("authorization") !== `Bearer tok-${scope}`) {
        return new Response(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }), {
          status: 401,
          headers: { "WWW-Authenticate": `Bearer realm="${proxy.url}/token",service="fixture",scope="${scope}"` },
        });
      }
      return forward();
    });
  });
  afterAll(() => proxy.stop());

  test("fetches an anonymous token with the challenge's service and scope, then pulls", async () => {
    requireCredentials = false;
    const manifest = await new RegistryClient({ ...fast, credentials: () => undefined }).getManifest(
      refVia(proxy.host),
      "v1",
    );
    expect(manifest.digest as string).toBe(image.indexDigest);
    const last = tokenRequests.at(-1)!;
    expect(last.searchParams.get("service")).toBe("fixture");
    expect(last.searchParams.get("scope")).toBe(`repository:registry-${run}/app:pull`);
  });

  test("sends credentials to the token server when it requires them", async () => {
    requireCredentials = true;
    const client = new RegistryClient({ ...fast, credentials: () => ({ username: "bob", password: "token-pass" }) });
    const manifest = await client.getManifest(refVia(proxy.host), "v1");
    expect(manifest.digest as string).toBe(image.indexDigest);
  });

  test("a token server that refuses is exit 6", async () => {
    requireCredentials = true;
    const error = await new RegistryClient({ ...fast, credentials: () => undefined })
      .getManifest(refVia(proxy.host), "v1")
      .catch((e) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(error.exitCode).toBe(6);
  });
});

describe("redirects and untrusted answers", () => {
  test("a redirect to another host gets the blob without the Authorization header", async () => {
    const other = startProxy(registry.url);
    const origin = startProxy(registry.url, (request, forward) => {
      const url = new URL(request.url);
      if (url.pathname.includes("/blobs/"))
        return new Response(null, { status: 307, headers: { Location: `${other.url}${url.pathname}` } });
      return forward();
    });
    try {
      const client = new RegistryClient({ ...fast, credentials: () => ({ username: "carol", password: "pw" }) });
      const layer = kernelLayer();
      const originWithBasic = startProxy(origin.url, (request, forward) =>
        request.headers.get("authorization") === null
          ? new Response(null, { status: 401, headers: { "WWW-Authenticate": 'Basic realm="r"' } })
          : forward(),
      );
      try {
        const { response } = await client.getBlob(refVia(originWithBasic.host), layer.digest as Digest);
        expect(digestOf(new Uint8Array(await response.arrayBuffer())) as string).toBe(layer.digest);
        expect(originWithBasic.requests.at(-1)!.headers.authorization).toStartWith("Basic ");
        expect(other.requests.at(-1)!.headers.authorization).toBeUndefined();
      } finally {
        await originWithBasic.stop();
      }
    } finally {
      await origin.stop();
      await other.stop();
    }
  });

  test("a manifest larger than the limit is refused (exit 4)", async () => {
    const proxy = startProxy(
      registry.url,
      () =>
        new Response(new Uint8Array(MAX_MANIFEST_BYTES + 1), {
          headers: { "Content-Type": "application/vnd.oci.image.index.v1+json" },
        }),
    );
    try {
      const error = await new RegistryClient(fast).getManifest(refVia(proxy.host), "v1").catch((e) => e);
      expect(error).toBeInstanceOf(IntegrityError);
      expect(error.exitCode).toBe(4);
    } finally {
      await proxy.stop();
    }
  });

  test("a manifest whose bytes do not match Docker-Content-Digest is refused", async () => {
    const proxy = startProxy(registry.url, async (_request, forward) => {
      const response = await forward();
      const text = (await response.text()).replace("schemaVersion", "schemaVersion ");
      return new Response(text, { status: response.status, headers: response.headers });
    });
    try {
      await expect(new RegistryClient(fast).getManifest(refVia(proxy.host), "v1")).rejects.toBeInstanceOf(
        DigestMismatchError,
      );
    } finally {
      await proxy.stop();
    }
  });
});

describe("parseChallenge()", () => {
  test("reads quoted and bare parameters", () => {
    expect(
      parseChallenge('Bearer realm="https://auth.example/token",service=registry.example,scope="repository:a/b:pull"'),
    ).toEqual({
      scheme: "bearer",
      params: { realm: "https://auth.example/token", service: "registry.example", scope: "repository:a/b:pull" },
    });
  });
});
