/**
 * `ocicache serve` in a process of its own, as users run it, on a free port
 * of 127.0.0.1, returned once it listens.
 *
 * @module
 */

import { join } from "node:path";
import type { Subprocess } from "bun";
import { CLI } from "./cli.ts";
import { freePort } from "./registry.ts";

/** A running server. */
export interface ServeHandle {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** `127.0.0.1:<port>` */
  host: string;
  /** The line it printed when it started listening. */
  line: string;
  /** SIGTERM, and wait for it to exit. */
  stop(): Promise<void>;
}

/**
 * Start `serve` with the cache and config under `dir`, mirroring `upstream`, with `args` added; run from source, or
 * as `program` (the compiled binary).
 */
export async function startServe(
  dir: string,
  upstream: string,
  args: string[] = [],
  program: string[] = ["bun", CLI],
): Promise<ServeHandle> {
  const host = `127.0.0.1:${freePort()}`;
  const proc = Bun.spawn([...program, "serve", "--listen", host, "--upstream", upstream, ...args], {
    env: { ...process.env, OCICACHE_DIR: join(dir, "cache"), XDG_CONFIG_HOME: join(dir, "config") },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = proc.stdout.getReader();
  const line = new TextDecoder().decode((await reader.read()).value);
  reader.releaseLock();
  return {
    proc,
    host,
    line,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
