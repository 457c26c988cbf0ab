/**
 * `ocicache serve`: the admin API (and, with an upstream, the registry
 * mirror) on 127.0.0.1 by default. Mutating routes need the admin token:
 * `OCICACHE_ADMIN_TOKEN`, or one generated at start into a file only the
 * owner can read. A non-loopback address needs `OCICACHE_ADMIN_TOKEN`, and a
 * mirror there needs client credentials (`--htpasswd`) unless
 * `--public-mirror` says it may be open. Only requests for an IP address,
 * `localhost`, the listen host or an `--allowed-host` are answered.
 * SIGTERM and SIGINT stop accepting, finish the requests in flight, exit 0.
 *
 * @module
 */

import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Config } from "../config/config.ts";
import { EXIT_CODES, UsageError } from "../errors.ts";
import { configDir } from "../home.ts";
import { isLoopback } from "../oci/host.ts";
import { createAdminApp } from "../server/app.ts";
import { readHtpasswd } from "../server/htpasswd.ts";
import { type Listener, listenHttp } from "../server/listener.ts";
import { Metrics } from "../server/metrics.ts";
import { Upkeep } from "../server/upkeep.ts";
import { writeFileAtomic } from "../store/files.ts";
import { formatBytes } from "../units.ts";
import { type Context, cleanupLimits, loadPolicy, openCache } from "./context.ts";

/**
 * A server others can reach needs an admin token of the user's own, and a mirror others can reach needs client
 * credentials, or to be public on purpose: it pulls with this machine's registry credentials.
 *
 * @throws {UsageError} naming what is missing.
 */
function checkExposure(config: Config, loopback: boolean, token: string | undefined): void {
  if (loopback) return;
  if (token === undefined || token.length < 16) {
    throw new UsageError(
      `Cannot listen on "${config.listen}" without an admin token: set OCICACHE_ADMIN_TOKEN (16 characters or more), ` +
        `or listen on 127.0.0.1`,
    );
  }
  if (config.upstream !== undefined && config.htpasswd === undefined && !config.publicMirror) {
    throw new UsageError(
      `Cannot serve the mirror on "${config.listen}" to anyone who can reach it, with this machine's registry ` +
        `credentials: give --htpasswd FILE, or --public-mirror`,
    );
  }
}

/** The line `serve` prints once it listens: where, what it mirrors, where its admin token is, who may use it. */
function listening(config: Config, address: string, loopback: boolean, tokenFile: string | undefined): string {
  const where = tokenFile === undefined ? "from OCICACHE_ADMIN_TOKEN" : `in ${tokenFile}`;
  const clients =
    config.upstream === undefined
      ? ""
      : config.htpasswd !== undefined
        ? `, mirror clients need credentials from ${config.htpasswd}`
        : loopback
          ? ""
          : ", mirror open to anyone who can reach it (--public-mirror)";
  const mirroring = config.upstream === undefined ? "" : `, mirroring ${config.upstream}`;
  return `listening on http://${address}${mirroring} (admin token ${where}${clients})`;
}

/**
 * Run the server until SIGTERM or SIGINT.
 *
 * @throws {UsageError} for arguments, or a non-loopback address without a token.
 */
export async function runServe(context: Context): Promise<number> {
  if (context.args.length > 0) throw new UsageError(`Cannot run serve with arguments: "${context.args[0]}"`);
  const { config } = context;
  const { hostname, port } = splitListen(config.listen);
  const loopback = isLoopback(hostname);
  const fromEnv = process.env.OCICACHE_ADMIN_TOKEN;
  checkExposure(config, loopback, fromEnv);
  const htpasswd = config.htpasswd === undefined ? undefined : readHtpasswd(config.htpasswd);
  const policy = loadPolicy(context);
  const generated = fromEnv !== undefined && fromEnv !== "" ? undefined : generateToken();
  const token = generated?.value ?? fromEnv!;
  const metrics = new Metrics();
  let upkeep: Upkeep | undefined;
  const cache = openCache(context, {
    onEvent: (event) => {
      metrics.record(event);
      upkeep?.record(event);
    },
  });
  upkeep = new Upkeep(cache, {
    policy: cleanupLimits(config),
    intervalMs: config.autoCleanIntervalMs,
    onCleanup: (outcome) =>
      context.warn(
        "error" in outcome
          ? `Cannot clean the cache automatically: ${outcome.error.message}`
          : `cleaned the cache: removed ${outcome.report.removed.length} ` +
              `(${formatBytes(outcome.report.freedBytes)}), ${formatBytes(outcome.report.remainingBytes)} left`,
      ),
  });
  const app = createAdminApp({
    config,
    cache,
    metrics,
    token,
    allowedHosts: [hostname, ...config.allowedHosts],
    ...(config.upstream !== undefined && { upstream: config.upstream }),
    ...(htpasswd !== undefined && { htpasswd }),
    ...(policy !== undefined && { policy }),
  });
  const stopped = new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  let server: Listener;
  try {
    server = await listenHttp(app.fetch, {
      hostname: hostname.replace(/^\[|\]$/g, ""),
      port,
      idleTimeoutSeconds: IDLE_CONNECTION_SECONDS,
    });
  } catch (cause) {
    throw new UsageError(`Cannot listen on "${config.listen}": ${(cause as Error).message.replace(/\.$/, "")}`, {
      cause,
    });
  }
  context.print(listening(config, `${hostname}:${server.port}`, loopback, generated?.file));
  upkeep.start();
  const signal = await stopped;
  context.warn(`${signal}: finishing the requests in flight`);
  upkeep.stop();
  await server.stop();
  await upkeep.settled();
  return EXIT_CODES.ok;
}

/** Seconds a connection may carry nothing before it is closed (keep-alive connections are not held forever). */
const IDLE_CONNECTION_SECONDS = 60;

/** A random token, written to `$XDG_CONFIG_HOME/ocicache/admin-token` with mode 0600. */
function generateToken(): { value: string; file: string } {
  const value = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
  const file = join(configDir(process.env), "admin-token");
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomic(file, `${value}\n`, { mode: 0o600 });
  return { value, file };
}

function splitListen(listen: string): { hostname: string; port: number } {
  const colon = listen.lastIndexOf(":");
  return { hostname: listen.slice(0, colon), port: Number(listen.slice(colon + 1)) };
}
