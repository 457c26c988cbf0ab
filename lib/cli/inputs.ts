/**
 * What each command takes as its `REF`: one parser, and one table of which command takes which kind. A registry
 * reference (`[host[:port]/]repo[:tag][@sha256:…]`) everywhere; an `oci:DIR[:tag]` layout, read in place, only
 * where files are handed out (`pull`, `path`, `cat`). Any other command given a layout says why in one line,
 * instead of failing to parse it as a registry host.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { type LayoutSource, parseLayoutSource, parseReference, type Reference } from "../oci/reference.ts";

/** A parsed input: a layout read in place, or a registry reference. */
export type Input = { layout: LayoutSource } | { ref: Reference };

/** The commands that take a `REF`, and whether each takes a layout too. */
export const INPUT_KINDS = {
  pull: ["reference", "layout"],
  path: ["reference", "layout"],
  cat: ["reference", "layout"],
  inspect: ["reference"],
  tags: ["reference"],
  lock: ["reference"],
  rm: ["reference"],
  doctor: ["reference"],
} as const satisfies Record<string, ReadonlyArray<"reference" | "layout">>;

/** A command that takes a `REF`. */
export type InputCommand = keyof typeof INPUT_KINDS;

/**
 * Parse what `command` was given.
 *
 * @throws {UsageError} for input that is neither, or a layout given to a command that takes none.
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseInput } from "./inputs.ts";
 * assert.deepEqual(parseInput("pull", "oci:./image:1"), { layout: { dir: "./image", tag: "1" } });
 * assert.throws(() => parseInput("inspect", "oci:./image:1"), /takes registry references/);
 * ```
 */
export function parseInput(command: InputCommand, input: string): Input {
  const layout = parseLayoutSource(input);
  if (layout === undefined) return { ref: parseReference(input) };
  if ((INPUT_KINDS[command] as readonly string[]).includes("layout")) return { layout };
  throw new UsageError(
    `Cannot ${command} "${input.slice(0, 80)}": ${command} takes registry references only; an oci:DIR layout is ` +
      `read in place by pull, path and cat`,
  );
}

/**
 * A registry reference `command` was given.
 *
 * @throws {UsageError} for a layout, or what is no reference.
 */
export function parseRegistryInput(command: InputCommand, input: string): Reference {
  const parsed = parseInput(command, input);
  if ("layout" in parsed) throw new UsageError(`Cannot ${command} "${input.slice(0, 80)}": give a registry reference`);
  return parsed.ref;
}
