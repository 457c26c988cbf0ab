/**
 * A token server for the registry's `auth.token` mode (distribution's
 * "Token Authentication Specification"): it signs JWTs with an RSA key made
 * by `openssl`, whose certificate the registry trusts (`rootcertbundle`), and
 * names the key the way the registry looks it up (libtrust's key ID).
 *
 * @module
 */

import { createPrivateKey, createPublicKey, createSign, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TokenServer {
  /** The realm URL for the registry's config. */
  realm: string;
  service: string;
  issuer: string;
  /** The certificate (PEM file) the registry trusts. */
  certificate: string;
  /** Every token request: scope, and the user when credentials came. */
  requests: Array<{ scope: string | null; user: string | undefined }>;
  /** A token with the given access, for the test's own pushes. */
  tokenFor(name: string, actions: string[]): string;
  stop(): Promise<void>;
}

/** Which actions a user may take on a repository; `undefined` refuses with 401. */
export type TokenPolicy = (
  repository: string,
  user: { username: string; password: string } | undefined,
) => string[] | undefined;

export function startTokenServer(policy: TokenPolicy): TokenServer {
  const dir = mkdtempSync(join(tmpdir(), "ocicache-token-"));
  const key = join(dir, "key.pem");
  const certificate = join(dir, "cert.pem");
  const made = Bun.spawnSync(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      certificate,
      "-days",
      "1",
      "-subj",
      "/CN=ocicache-test-token-issuer",
    ],
    { stderr: "pipe" },
  );
  if (made.exitCode !== 0) throw new Error(`openssl: ${made.stderr.toString()}`);
  const privateKey = createPrivateKey(readFileSync(key));
  const kid = libtrustKeyId(createPublicKey(privateKey).export({ type: "spki", format: "der" }));
  const service = "ocicache-test";
  const issuer = "ocicache-test-issuer";
  const requests: TokenServer["requests"] = [];

  const sign = (subject: string, access: Array<{ type: string; name: string; actions: string[] }>) => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "RS256", kid };
    const claims = {
      iss: issuer,
      sub: subject,
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString("hex"),
      access,
    };
    const body = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign("RSA-SHA256").update(body).sign(privateKey);
    return `${body}.${b64url(signature)}`;
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const url = new URL(request.url);
      const scope = url.searchParams.get("scope");
      const basic = request.headers.get("authorization");
      const user = basic?.startsWith("Basic ") ? decodeBasic(basic.slice(6)) : undefined;
      requests.push({ scope, user: user?.username });
      const match = scope === null ? null : /^repository:([^:]+):(.+)$/.exec(scope);
      if (match === null) return Response.json({ token: sign(user?.username ?? "", []) });
      const granted = policy(match[1]!, user);
      if (granted === undefined) return new Response("denied", { status: 401 });
      const wanted = match[2]!.split(",");
      return Response.json({
        token: sign(user?.username ?? "", [
          { type: "repository", name: match[1]!, actions: wanted.filter((a) => granted.includes(a)) },
        ]),
      });
    },
  });
  return {
    realm: `http://127.0.0.1:${server.port}/token`,
    service,
    issuer,
    certificate,
    requests,
    tokenFor: (name, actions) => sign("test", [{ type: "repository", name, actions }]),
    stop: async () => {
      await server.stop(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** libtrust's key ID: the SHA-256 of the DER public key, cut to 240 bits, base32, in 12 groups of 4. */
function libtrustKeyId(der: Buffer): string {
  const hash = new Bun.CryptoHasher("sha256").update(der).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(":");
}

function b64url(input: string | Buffer): string {
  return Buffer.from(input).toString("base64url");
}

function decodeBasic(encoded: string): { username: string; password: string } | undefined {
  const text = Buffer.from(encoded, "base64").toString("utf8");
  const colon = text.indexOf(":");
  return colon === -1 ? undefined : { username: text.slice(0, colon), password: text.slice(colon + 1) };
}
