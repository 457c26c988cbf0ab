/**
 * Starts Debian's `docker-registry` (the CNCF distribution registry) on
 * 127.0.0.1 with its own storage directory, and stops it.
 *
 * @module
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

/** A running registry. */
export interface RegistryHandle {
  /** `127.0.0.1:<port>` */
  host: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Where it stores its data and config. */
  dir: string;
  stop(): Promise<void>;
}

/** Extra registry configuration (YAML lines under `auth:`), e.g. htpasswd. */
export interface RegistryOptions {
  /** An htpasswd file: the registry then demands basic auth. */
  htpasswd?: string;
  /** Token auth: the realm URL, service, issuer and the PEM certificate that signs tokens. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** The port to listen on. @default a free port */
  port?: number;
  /** Proxy mode (a pull-through cache of another registry): its URL. */
  proxy?: string;
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { certificate: string; key: string };
}

const REGISTRY_BIN = process.env.OCICACHE_REGISTRY_BIN ?? "docker-registry";

/**
 * Start a registry and wait until `/v2/` answers.
 */
export async function startRegistry(options: RegistryOptions = {}): Promise<RegistryHandle> {
  const dir = mkdtempSync(join(tmpdir(), "ocicache-registry-"));
  const port = options.port ?? freePort();
  const auth =
    options.htpasswd !== undefined
      ? `auth:\n  htpasswd:\n    realm: ocicache-test\n    path: ${options.htpasswd}\n`
      : options.token !== undefined
        ? [
            "auth:",
            "  token:",
            `    realm: ${options.token.realm}`,
            `    service: ${options.token.service}`,
            `    issuer: ${options.token.issuer}`,
            `    rootcertbundle: ${options.token.rootCertBundle}`,
            "",
          ].join("\n")
        : "";
  const tls =
    options.tls === undefined
      ? ""
      : `  tls:\n    certificate: ${options.tls.certificate}\n    key: ${options.tls.key}\n`;
  const proxy = options.proxy === undefined ? "" : `proxy:\n  remoteurl: ${options.proxy}\n`;
  writeFileSync(
    join(dir, "config.yml"),
    `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, "data")}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${tls}${auth}${proxy}`,
  );
  const proc: Subprocess = Bun.spawn([REGISTRY_BIN, "serve", join(dir, "config.yml")], {
    stdout: "ignore",
    stderr: "pipe",
  });
  const host = `127.0.0.1:${port}`;
  const url = `${options.tls === undefined ? "http" : "https"}://${host}`;
  await waitFor(url, proc);
  return {
    host,
    url,
    dir,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The registry that `scripts/test.sh` started (`OCICACHE_TEST_REGISTRY`), or
 * a new one for this test file.
 */
export async function sharedRegistry(): Promise<RegistryHandle> {
  const shared = process.env.OCICACHE_TEST_REGISTRY;
  if (shared === undefined || shared === "") return startRegistry();
  return { host: shared, url: `http://${shared}`, dir: "", stop: async () => {} };
}

/** A port that was free a moment ago. */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

async function waitFor(url: string, proc: Subprocess): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) {
      const stderr = await new Response(proc.stderr as ReadableStream).text();
      throw new Error(`docker-registry exited with ${proc.exitCode}: ${stderr.slice(0, 500)}`);
    }
    try {
      const response = await fetch(`${url}/v2/`, { tls: { rejectUnauthorized: false } });
      await response.body?.cancel();
      if (response.status === 200 || response.status === 401) return;
    } catch {
      // Not listening yet.
    }
    await Bun.sleep(50);
  }
  proc.kill();
  throw new Error(`docker-registry did not answer on ${url} within 15 s`);
}
