/**
 * Text on its way to a terminal. Text from outside (a registry's error
 * codes and messages, annotations, names read from `index.json`) has its
 * control characters shown escaped, never sent, so that no byte of it can
 * move the cursor, recolour the screen or forge a line.
 *
 * @module
 */

/**
 * `text` with every C0 and C1 control character and DEL written as `\xNN`
 * (line breaks included: one message stays one line).
 *
 * @example
 * ```ts
 * import { escapeControl } from "./text.ts";
 * console.log(escapeControl("bad\u001b[31mred")); // bad\x1b[31mred
 * ```
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL_RE, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/g;

/** `text` cut to `width` characters, its last one `…` when it was longer. */
export function ellipsis(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/**
 * A reference (or a row that starts with one) cut to `width` keeping what tells references apart: the host is
 * shortened first (`127…/unikraft/nginx:1.25`), then dropped (`…/unikraft/nginx:1.25`), then the repository's
 * leading components (`…/nginx:1.25`); only then is the end cut.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { fitReference } from "./text.ts";
 * assert.equal(fitReference("127.0.0.1:36254/unikraft/nginx:1.25", 24), "127…/unikraft/nginx:1.25");
 * assert.equal(fitReference("127.0.0.1:36254/unikraft/nginx:1.25", 12), "…/nginx:1.25");
 * ```
 */
export function fitReference(text: string, width: number): string {
  if (text.length <= width) return text;
  const slash = text.indexOf("/");
  if (slash <= 0 || text.startsWith("oci:")) return ellipsis(text, width);
  const rest = text.slice(slash);
  const hostRoom = width - rest.length;
  if (hostRoom >= 2) return `${ellipsis(text.slice(0, slash), hostRoom)}${rest}`;
  // The repository's components after the host, dropped from the front while the rest does not fit.
  const parts = rest.slice(1).split("/");
  while (parts.length > 1 && parts.join("/").length + 2 > width) parts.shift();
  return ellipsis(`…/${parts.join("/")}`, width);
}

/** The width to fit: `COLUMNS` when set, else the terminal's, else none (a pipe gets whole lines). */
export function terminalWidth(): number | undefined {
  const columns = Number(process.env.COLUMNS);
  if (Number.isInteger(columns) && columns > 0) return columns;
  return process.stdout.isTTY ? process.stdout.columns : undefined;
}

/**
 * Whether file descriptor `fd` is a terminal, from `/proc` where there is one: asking `process.stderr` costs a start
 * about 15 ms in Bun, a readlink next to nothing. `node:fs` is loaded here, not with this module: `--version` and a
 * usage error load no file-system module at all.
 */
export function isTerminal(fd: 1 | 2): boolean {
  try {
    const { readlinkSync } = require("node:fs") as typeof import("node:fs");
    return /^\/dev\/(pts\/|tty)/.test(readlinkSync(`/proc/self/fd/${fd}`));
  } catch {
    return (fd === 1 ? process.stdout : process.stderr).isTTY === true;
  }
}

/**
 * `1 locked tag`, `2 locked tags`: a count with its noun, plural as English wants it (a regular `-s`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { plural } from "./text.ts";
 * assert.equal(plural(1, "blob"), "1 blob");
 * assert.equal(plural(0, "blob"), "0 blobs");
 * ```
 */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
