/**
 * A containerd of its own for tests and the bench: Debian's containerd with
 * root, state and socket in a temp directory and no CRI plugin, and `ctr`
 * pointed at it.
 *
 * @module
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** What a `ctr` command did. */
export interface Ran {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A containerd of its own: root, state and socket in a temp directory, no CRI plugin. */
export async function startContainerd(
  dir: string,
): Promise<{ ctr: (...args: string[]) => Ran; stop(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "containerd.sock");
  writeFileSync(
    join(dir, "config.toml"),
    [
      "version = 2",
      `root = "${join(dir, "root")}"`,
      `state = "${join(dir, "state")}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${join(dir, "ttrpc.sock")}"`,
      "",
    ].join("\n"),
  );
  const proc = Bun.spawn(["containerd", "--config", join(dir, "config.toml")], { stdout: "ignore", stderr: "ignore" });
  const ctr = (...args: string[]): Ran => {
    const ran = Bun.spawnSync(["ctr", "--address", socket, ...args], { stdout: "pipe", stderr: "pipe" });
    return { exitCode: ran.exitCode, stdout: String(ran.stdout), stderr: String(ran.stderr) };
  };
  for (let i = 0; i < 100 && ctr("version").exitCode !== 0; i++) await Bun.sleep(50);
  return {
    ctr,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
