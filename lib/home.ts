/**
 * The user's home directory.
 *
 * @module
 */

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
