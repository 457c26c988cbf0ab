/**
 * Runs the CLI as users do: `bun mod.ts …` in a child process.
 *
 * @module
 */

import { join } from "node:path";

/** The CLI's entry. */
export const MOD = join(import.meta.dir, "..", "..", "mod.ts");

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes (for `cat`). */
  bytes: Uint8Array;
}

/** Run `bun mod.ts ARGS` with `env` added to this process's environment. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const proc = Bun.spawn(["bun", MOD, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [bytes, stderr, code] = await Promise.all([new Response(proc.stdout).bytes(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout: new TextDecoder().decode(bytes), stderr, bytes };
}
