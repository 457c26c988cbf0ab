/**
 * Every documented flag of every command, through the compiled binary, walked from the options table
 * (`lib/cli/options.ts`): each command's `--help` names each of its flags, each flag given in a bad form is exit 2
 * with one line naming it, and a flag the command does not take is refused. An option added to the table without
 * its bad form here fails the suite.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { COMMANDS, OPTIONS } from "../../lib/cli/options.ts";
import { compiledBinary } from "../helpers/binary.ts";
import { useTempDir } from "../helpers/env.ts";

const tmp = useTempDir("flags");
let binary: string;
beforeAll(() => {
  binary = compiledBinary();
});

type Option = keyof typeof OPTIONS;
/** Options every command takes (beyond the table's own lists). */
const COMMON: Option[] = ["cache-dir", "config", "quiet", "debug", "help", "version"];
/** A bad value for an option whose value is checked, and what the one line says. */
const BAD_VALUES: Partial<Record<Option, [string, string]>> = {
  "max-age": ["forever", "--max-age"],
  grace: ["forever", "--grace"],
  "fresh-for": ["forever", "--fresh-for"],
  "max-size": ["lots", "--max-size"],
  "low-speed-limit": ["lots", "--low-speed-limit"],
  "client-buffer": ["lots", "--client-buffer"],
  concurrency: ["0", "--concurrency"],
  "max-downloads": ["0", "--max-downloads"],
  "max-connections": ["0", "--max-connections"],
  "connect-timeout": ["0", "--connect-timeout"],
  "idle-timeout": ["0", "--idle-timeout"],
  "low-speed-time": ["0", "--low-speed-time"],
  listen: ["nowhere", "--listen"],
  upstream: ["bad host!", "--upstream"],
  "allowed-host": ["bad host!", "--allowed-host"],
  mirror: ["bad host!", "--mirror"],
  "insecure-registry": ["bad host!", "--insecure-registry"],
  config: ["/nonexistent/ocicache.json", "/nonexistent/ocicache.json"],
  role: ["boot", "--role takes kernel, initrd, kernel.dbg, rom"],
  platform: ["a/b/c/d", 'platform "a/b/c/d"'],
  progress: ["fancy", '--progress takes auto, plain, json, not "fancy"'],
};
/** Value options whose value is a free path or name: the bad form is the option with no value. */
const FREE_VALUES: Option[] = ["output", "lock-file", "cache-dir", "ca-file", "htpasswd", "plat", "policy"];
/** What a command needs besides the flag, to reach the check of its value. */
const ARGS: Partial<Record<keyof typeof COMMANDS, string[]>> = {
  path: ["127.0.0.1:9/x/y:1", "--role", "kernel"],
  cat: ["127.0.0.1:9/x/y:1", "--role", "kernel"],
  pull: ["127.0.0.1:9/x/y:1"],
};

/** The argv that gives `option` in a bad form, and what the error line must name. */
function badForm(option: Option): { argv: string[]; names: string } {
  const spec = OPTIONS[option] as { type: string };
  if (spec.type === "boolean") return { argv: [`--${option}=yes`], names: `"--${option}" takes no value` };
  const bad = BAD_VALUES[option];
  if (bad !== undefined) return { argv: [`--${option}`, bad[0]], names: bad[1] };
  return { argv: [`--${option}`], names: `"--${option}" needs a value` };
}

const run = (argv: string[]) => {
  const ran = Bun.spawnSync([binary, ...argv], {
    timeout: 10_000,
    env: { ...process.env, OCICACHE_DIR: join(tmp.path, "cache"), XDG_CONFIG_HOME: join(tmp.path, "config") },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: ran.exitCode, stdout: ran.stdout.toString(), stderr: ran.stderr.toString() };
};

describe("the compiled binary's stack traces", () => {
  test("--debug names the source: lib/…ts lines, our functions and error classes", () => {
    const ran = run(["pull", "127.0.0.1:1/a/b:1", "--debug"]);
    expect(ran.code).toBe(5);
    const lines = ran.stderr.split("\n");
    expect(lines[1]).toStartWith("RegistryError: Cannot reach");
    expect(lines[2]).toMatch(/^ {4}at \w{4,} \(lib\/registry\/\w+\.ts:\d+:\d+\)$/);
    expect(ran.stderr).not.toContain("$bunfs");
  });
});

describe("every documented flag, through the compiled binary", () => {
  test("every option of the table has its bad form here", () => {
    for (const option of Object.keys(OPTIONS) as Option[]) {
      const spec = OPTIONS[option] as { type: string };
      const decided = spec.type === "boolean" || BAD_VALUES[option] !== undefined || FREE_VALUES.includes(option);
      expect([option, decided]).toEqual([option, true]);
    }
  });

  for (const [command, doc] of Object.entries(COMMANDS) as Array<[keyof typeof COMMANDS, { options: Option[] }]>) {
    test(`${command}: --help names each of its flags; each in a bad form is exit 2 naming it`, () => {
      const help = run([command, "--help"]);
      expect(help.code).toBe(0);
      for (const option of [...doc.options, ...COMMON]) {
        expect([option, help.stdout.includes(`--${option}`)]).toEqual([option, true]);
        if (option === "help" || option === "version") continue;
        const { argv, names } = badForm(option);
        // The flag last: an option without its value must be the end of the line to be missing one.
        const ran = run([command, ...(ARGS[command] ?? []), ...argv]);
        if (command === "doctor" && option === "config") {
          // doctor diagnoses a config file that does not load, as one of its checks (exit 1), rather than fail on it.
          expect([ran.code, ran.stdout.includes(names)]).toEqual([1, true]);
          continue;
        }
        expect([command, option, ran.code]).toEqual([command, option, 2]);
        expect([command, option, ran.stderr.trim().split("\n").length]).toEqual([command, option, 1]);
        expect([command, option, ran.stderr.includes(names)]).toEqual([command, option, true]);
      }
      const foreign = (Object.keys(OPTIONS) as Option[]).find((o) => ![...doc.options, ...COMMON].includes(o))!;
      const refused = run([
        command,
        `--${foreign}`,
        ...((OPTIONS[foreign] as { type: string }).type === "string" ? ["x"] : []),
      ]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`"${command}" takes no option --${foreign}`);
    });
  }
});
