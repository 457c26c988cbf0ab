/**
 * The user's home directory, and ocicache's config directory in it.
 *
 * @module
 */

import { join } from "node:path";

/**
 * `$HOME`, else the account's home directory from `node:os`, loaded only
 * then: loading it costs every start a few milliseconds.
 *
 * @example
 * ```ts
 * import { homeDir } from "./home.ts";
 * console.log(homeDir(process.env));
 * ```
 */
export function homeDir(env: Record<string, string | undefined>): string {
  return env.HOME || (require("node:os") as typeof import("node:os")).homedir();
}

/**
 * ocicache's own config directory: `$XDG_CONFIG_HOME/ocicache`, else
 * `~/.config/ocicache` (the config file and the generated admin token).
 */
export function configDir(env: Record<string, string | undefined>): string {
  return join(env.XDG_CONFIG_HOME || join(homeDir(env), ".config"), "ocicache");
}
