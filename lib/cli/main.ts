#!/usr/bin/env bun
/**
 * The command line: `bin` and the compiled binary start here. It parses
 * arguments, loads the configuration and dispatches; each command's module
 * is loaded only when that command runs, and so is the configuration: `--version`,
 * help and a usage error load no file-system module, a warm `path` only what
 * a hit needs. Errors become one line on stderr and an exit code here.
 *
 * @module
 */

import pkg from "../../package.json" with { type: "json" };
import { EXIT_CODES, OcicacheError, UsageError } from "../errors.ts";
import { parseArguments } from "./args.ts";
import type { Context } from "./context.ts";
import { type CommandName, commandNamed, commandUsage, foreignOption, OPTIONS, usage } from "./options.ts";
import { escapeControl, isTerminal } from "./text.ts";

/**
 * Run the CLI with `argv` (without the program name) and return the exit code.
 * @example Run the command line in-process
 * ```ts
 * import assert from "node:assert";
 * import { main } from "ocicache";
 * assert.equal(await main(["--version"]), 0);
 * assert.equal(await main(["pull", "Not/A/Ref"]), 2); // a usage error, one line on stderr
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  let debug = argv.includes("--debug");
  try {
    const { values: flags, positionals } = parseArguments(argv, OPTIONS);
    debug = flags.debug === true;
    if (flags.version) return printLine(pkg.version);
    const [name, ...args] = positionals;
    if (name === "help") return printLine(args[0] === undefined ? usage() : commandUsage(known(args[0])));
    if (name === undefined) {
      if (flags.help) return printLine(usage());
      // A makefile that lost its command line should fail, not print help and succeed.
      console.error(usage());
      return EXIT_CODES.usage;
    }
    const command = known(name);
    if (flags.help) return printLine(commandUsage(command));
    const foreign = foreignOption(command, flags);
    if (foreign !== undefined)
      throw new UsageError(`"${name}" takes no option --${foreign} (see ocicache ${name} --help)`);
    const [run, { flagSettings, loadConfig }] = await Promise.all([
      findCommand(command),
      import("../config/config.ts"),
    ]);
    const sources = { flags: flagSettings(flags), ...(flags.config !== undefined && { configPath: flags.config }) };
    const config = await loadConfig(sources).catch((error: unknown) => {
      // doctor diagnoses a config file that does not load (every problem in it), rather than failing on it.
      if (command !== "doctor" || !(error instanceof UsageError)) throw error;
      return loadConfig({ ...sources, skipFile: true });
    });
    const context: Context = {
      flags,
      config,
      args,
      print: (text) => printLine(text),
      warn: (message) => {
        if (!flags.quiet) console.error(`ocicache: warning: ${escapeControl(message)}`);
      },
    };
    return await run(context);
  } catch (error) {
    return report(error, debug);
  }
}

/** The command `name` names; `login` and `logout` point to docker's. */
function known(name: string): CommandName {
  const command = commandNamed(name);
  if (command !== undefined) return command;
  if (name === "login" || name === "logout")
    throw new UsageError(
      `ocicache has no "${name}": run \`docker ${name}\`; ocicache uses the credentials it saves ` +
        "(~/.docker/config.json and its credential helpers; see docs/behaviour.md)",
    );
  throw new UsageError(`Unknown command "${name}" (see ocicache --help)`);
}

async function findCommand(command: CommandName): Promise<(context: Context) => Promise<number>> {
  switch (command) {
    case "pull":
    case "path":
    case "cat":
      await exitOnSignals();
      return (await import("./pull.ts")).PULL_COMMANDS[command];
    case "lock":
      await exitOnSignals();
      return (await import("./lock.ts")).runLock;
    case "inspect":
    case "tags":
      return (await import("./inspect.ts")).INSPECT_COMMANDS[command];
    case "serve":
      return (await import("./serve.ts")).runServe;
    case "completion":
      return (await import("./completion.ts")).runCompletion;
    default:
      return (await import("./manage.ts")).MANAGE_COMMANDS[command];
  }
}

/**
 * SIGINT and SIGTERM end a pull with 130 and 143: nothing is removed from
 * `blobs/`, partial downloads stay in `tmp/` for the next pull to resume, and
 * this process's locks and unfinished temp files go.
 */
async function exitOnSignals(): Promise<void> {
  const [{ releaseAllLocks }, { removeUnfinished }] = await Promise.all([
    import("../store/lock.ts"),
    import("../store/files.ts"),
  ]);
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(signal, () => {
      releaseAllLocks();
      removeUnfinished();
      // A progress line is ended first: the message starts a line of its own.
      const clear = isTerminal(2) ? "\r\x1b[2K" : "";
      console.error(`${clear}ocicache: error: Interrupted by ${signal}; partial downloads are kept to resume`);
      process.exit(code);
    });
  }
}

/** One or more lines to stdout. `console.log`: `process.stdout` costs a start about 25 ms in Bun. */
function printLine(text: string): number {
  if (text !== "") console.log(text);
  return EXIT_CODES.ok;
}

function report(error: unknown, debug: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`ocicache: error: ${escapeControl(message.split("\n")[0]!)}`);
  // A stack starts with the message, which may carry a registry's text: every line is escaped (rule 9).
  if (debug && error instanceof Error && error.stack !== undefined)
    console.error(error.stack.split("\n").map(escapeControl).join("\n"));
  return error instanceof OcicacheError ? error.exitCode : EXIT_CODES.other;
}

if (import.meta.main) process.exitCode = await main(Bun.argv.slice(2));
