/**
 * The documentation check (`bun scripts/check-docs.ts`, run by
 * `scripts/test.sh`): every export of `mod.ts` has a doc comment, and every
 * value it exports (a function, a class, a constant) has a titled
 * `@example` whose code asserts something; each example is then run as a
 * user would paste it (`ocicache` is `mod.ts`). Then every other `@example`
 * in `lib/` runs the same way, four at once, from a directory of its own;
 * one whose title says `(needs a registry)` is listed and counted instead.
 * Prints each problem on a line of its own and exits 1 when there is one.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const root = join(import.meta.dir, "..");
const entry = join(root, "mod.ts");
const problems: string[] = [];
const work = mkdtempSync(join(tmpdir(), "ocicache-docs-"));
let ran = 0;
/** Examples already run (those of mod.ts's exports), by file and code. */
const seen = new Set<string>();
/** The examples whose title says they need a registry (`(needs a registry)`): listed and counted, not run. */
const REGISTRY_MARK = /\(needs a registry\)/;
const needsRegistry: string[] = [];

try {
  for (const { name, type, file } of exportsOf(entry)) {
    const doc = docOf(file, name);
    const where = `${name} (${file.slice(root.length + 1)})`;
    if (doc === undefined) {
      problems.push(`${where} has no doc comment`);
      continue;
    }
    if (type) continue;
    const examples = examplesOf(doc);
    if (examples.length === 0) problems.push(`${where} has no @example`);
    for (const example of examples) {
      if (example.title === "") problems.push(`${where}: an @example has no title`);
      if (!/\bassert/.test(example.code)) problems.push(`${where}: the example "${example.title}" asserts nothing`);
      seen.add(`${file}\n${example.code}`);
      const failure = await runExample(example.code, file, `${name}-${ran++}`);
      if (failure !== undefined) problems.push(`${where}: the example "${example.title}" fails: ${failure}`);
    }
  }
  // Then every other @example in lib/: each runs, unless its title says it needs a registry.
  const queue: Array<{ where: string; code: string; file: string }> = [];
  for (const file of new Bun.Glob("lib/**/*.ts").scanSync({ cwd: root, absolute: true })) {
    const text = readFileSync(file, "utf8");
    for (const doc of text.match(/\/\*\*(?:(?!\*\/)[\s\S])*\*\//g) ?? []) {
      for (const example of examplesOf(doc)) {
        const where = `${file.slice(root.length + 1)}: "${example.title || example.code.split("\n").at(-1)}"`;
        if (seen.has(`${file}\n${example.code}`)) continue;
        if (REGISTRY_MARK.test(example.title)) needsRegistry.push(where);
        else queue.push({ where, code: example.code, file });
      }
    }
  }
  await mapLimit(queue, 4, async ({ where, code, file }) => {
    const failure = await runExample(code, file, `lib-${ran++}`);
    if (failure !== undefined) problems.push(`${where} fails: ${failure}`);
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (problems.length > 0) {
  for (const problem of problems) console.error(`check-docs: ${problem}`);
  process.exit(1);
}
console.error(`check-docs: every export of mod.ts is documented; ${ran} examples of lib/ ran and passed`);
console.error(`check-docs: ${needsRegistry.length} need a registry and were not run:`);
for (const where of needsRegistry) console.error(`  ${where}`);

/** Run `run` over `items`, `limit` at a time. */
async function mapLimit<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The names `mod.ts` re-exports, whether each is a type, and the module that declares it. */
function exportsOf(path: string): Array<{ name: string; type: boolean; file: string }> {
  const text = readFileSync(path, "utf8");
  const found: Array<{ name: string; type: boolean; file: string }> = [];
  for (const match of text.matchAll(/^export (type )?\{([^}]*)\} from "([^"]+)";/gm)) {
    const file = resolve(dirname(path), match[3]!);
    for (const raw of match[2]!
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")) {
      const type = match[1] !== undefined || raw.startsWith("type ");
      found.push({ name: raw.replace(/^type /, ""), type, file });
    }
  }
  return found;
}

/** The doc comment right before the declaration of `name` in `file`. */
function docOf(file: string, name: string): string | undefined {
  const text = readFileSync(file, "utf8");
  const kinds = "(?:declare )?(?:async )?(?:function\\*? |class |const |let |interface |type )";
  const declaration = new RegExp(`(/\\*\\*(?:(?!\\*/)[\\s\\S])*\\*/)\\s*\\nexport ${kinds}${name}\\b`);
  return declaration.exec(text)?.[1];
}

/** Each `@example Title` and the code of its fenced block. */
function examplesOf(doc: string): Array<{ title: string; code: string }> {
  const body = doc
    .split("\n")
    .map((line) => line.replace(/^\s*\*( |$)/, ""))
    .join("\n");
  const examples: Array<{ title: string; code: string }> = [];
  for (const match of body.matchAll(/@example[ \t]*([^\n]*)\n```(?:ts|typescript)\n([\s\S]*?)\n```/g)) {
    examples.push({ title: match[1]!.trim(), code: match[2]! });
  }
  return examples;
}

/** Run one example from a directory of its own; `undefined` when it exits 0, else its last line of output. */
async function runExample(code: string, file: string, id: string): Promise<string | undefined> {
  const dir = join(work, id);
  // Each example's /tmp/ocicache-example is a directory of its own: examples run at once share no cache.
  const source = code
    .replaceAll("/tmp/ocicache-example", join(dir, "cache"))
    .replace(/from "ocicache"/g, `from ${JSON.stringify(entry)}`)
    .replace(/from "(\.{1,2}\/[^"]+)"/g, (_, spec: string) => `from ${JSON.stringify(resolve(dirname(file), spec))}`);
  Bun.spawnSync(["mkdir", "-p", dir]);
  writeFileSync(join(dir, "example.ts"), source);
  const proc = Bun.spawn(["bun", join(dir, "example.ts")], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill(), 30_000);
  const [stdout, stderr, code_] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  if (code_ === 0) return undefined;
  const lines = `${stdout}\n${stderr}`.split("\n").filter((l) => l.trim() !== "");
  return lines.find((l) => /error|Error/.test(l))?.trim() ?? lines.at(-1)?.trim() ?? `exit ${code_}`;
}
