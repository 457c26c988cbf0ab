/**
 * Runs the CLI as users do: its entry (what `bin` and the compiled binary
 * start) in a child process.
 *
 * @module
 */

import { join } from "node:path";

/** The CLI's entry. */
export const CLI = join(import.meta.dir, "..", "..", "lib", "cli", "main.ts");

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** stderr without the progress lines a log gets (a download starting, ending, the summary): warnings and errors. */
  messages: string;
  /** stdout as bytes (for `cat`). */
  bytes: Uint8Array;
}

/** Run `bun lib/cli/main.ts ARGS` with `env` added to this process's environment. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const proc = Bun.spawn(["bun", CLI, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [bytes, stderr, code] = await Promise.all([
    new Response(proc.stdout).bytes(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout: new TextDecoder().decode(bytes), stderr, messages: withoutProgress(stderr), bytes };
}

/** `stderr` without the lines of progress (and of waiting for another process) that a pull writes in a log. */
export function withoutProgress(stderr: string): string {
  return stderr
    .split(/(?<=\n)/)
    .filter((line) => !PROGRESS_LINE.test(line))
    .join("");
}

const PROGRESS_LINE = new RegExp(
  [
    "^ocicache: (fetching|fetched|resuming) ",
    "^ocicache: .+: fetched \\d+ blobs? \\(",
    "^ocicache: waiting for another ocicache",
  ].join("|"),
);
