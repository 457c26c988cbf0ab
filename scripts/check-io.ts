/**
 * The one-door check (`bun scripts/check-io.ts`, run by `scripts/test.sh`):
 * no module of `lib/` writes, renames, links, copies or chmods a file except
 * the store's writer (`lib/store/writer.ts`), and none opens or reads a file
 * except the bounded reader (`lib/oci/read.ts`) and the writer (which reads
 * back its own partial file). It looks at every name taken from `node:fs` or
 * `node:fs/promises` (named imports, `require`, lazy `import()`, a namespace's
 * members) and at `Bun.write`/`Bun.file`; and no module outside `lib/store/`
 * opens a file with `O_EXCL` or names a temp or partial file (`.part`,
 * `.partial`, `tmp/`): making and naming them is the store's. Prints each call
 * that goes around a door on a line of its own and exits 1 when there is one.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..");

const WRITER = "lib/store/writer.ts";
const READER = "lib/oci/read.ts";
/** Calls that write no file, by module, each with why. */
const NOT_FILES: Record<string, Record<string, string>> = {
  "lib/cli/pull.ts": { writeSync: "cat writes to its standard output, descriptor 1" },
};

/** What only the writer may call. */
const WRITES = new Set([
  "writeFileSync",
  "writeFile",
  "appendFileSync",
  "appendFile",
  "writeSync",
  "write",
  "writev",
  "writevSync",
  "createWriteStream",
  "renameSync",
  "rename",
  "chmodSync",
  "chmod",
  "fchmodSync",
  "fchmod",
  "lchmod",
  "copyFileSync",
  "copyFile",
  "cpSync",
  "cp",
  "linkSync",
  "link",
  "symlinkSync",
  "symlink",
  "truncateSync",
  "truncate",
  "ftruncateSync",
  "ftruncate",
  "futimesSync",
  "futimes",
  "fsyncSync",
  "fsync",
  "fdatasync",
  "fdatasyncSync",
]);
/** What only the reader (and the writer, for its own files) may call. */
const READS = new Set([
  "openSync",
  "open",
  "readFileSync",
  "readFile",
  "readSync",
  "read",
  "readv",
  "readvSync",
  "createReadStream",
  "openAsBlob",
]);

/** What only the store does: create a file exclusively, and name its temp and partial files. */
const STORE_ONLY: Array<[string, RegExp]> = [
  ["opens a file with O_EXCL", /\bO_EXCL\b/],
  ["names a temp or partial file", /["'`][^"'`\n]*(\.partial|\.part|\btmp\/)[^"'`\n]*["'`]/],
];

const problems: string[] = [];
for (const file of listTs("lib")) {
  const text = stripComments(readFileSync(join(root, file), "utf8"));
  for (const name of fsNamesUsed(text)) {
    if (NOT_FILES[file]?.[name] !== undefined) continue;
    if (WRITES.has(name) && file !== WRITER)
      problems.push(`${file} calls ${name}: files are written only by ${WRITER}`);
    if (READS.has(name) && file !== READER && file !== WRITER)
      problems.push(`${file} calls ${name}: files are opened and read only by ${READER}`);
  }
  if (!file.startsWith("lib/store/")) {
    for (const [what, re] of STORE_ONLY)
      if (re.test(text)) problems.push(`${file} ${what}: only lib/store/ makes and names the files it writes`);
  }
  for (const match of text.matchAll(/\bBun\.(write|file)\s*\(\s*([^,)]*)/g)) {
    const [, call, first] = match;
    if (call === "write" && /^Bun\.(stdout|stderr)$/.test(first!.trim())) continue;
    if (call === "write" && file !== WRITER)
      problems.push(`${file} calls Bun.write: files are written only by ${WRITER}`);
    if (call === "file" && file !== READER) problems.push(`${file} calls Bun.file: files are read only by ${READER}`);
  }
}

if (problems.length > 0) {
  for (const problem of problems) console.error(problem);
  process.exit(1);
}
console.log(`check-io: every file of lib/ is written through ${WRITER} and read through ${READER}`);

/** Each name a module takes from `node:fs` or `node:fs/promises`, however it takes it. */
function fsNamesUsed(text: string): Set<string> {
  const names = new Set<string>();
  const fs = `["'](?:node:)?fs(?:/promises)?["']`;
  const named = new RegExp(String.raw`import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*${fs}`, "g");
  for (const [, list] of text.matchAll(named)) for (const name of splitNames(list!)) names.add(name);
  const destructured = new RegExp(
    String.raw`(?:const|let|var)\s*\{([^}]*)\}\s*=\s*(?:await\s+import|require)\(${fs}\)`,
    "g",
  );
  for (const [, list] of text.matchAll(destructured)) for (const name of splitNames(list!)) names.add(name);
  const namespace = new RegExp(
    String.raw`import\s*\*\s*as\s+(\w+)\s+from\s*${fs}|(?:const|let)\s+(\w+)\s*=\s*(?:await\s+import|require)\(${fs}\)`,
    "g",
  );
  for (const match of text.matchAll(namespace)) {
    const alias = match[1] ?? match[2]!;
    for (const [, member] of text.matchAll(new RegExp(String.raw`\b${alias}\.(\w+)`, "g"))) names.add(member!);
  }
  const chained = new RegExp(String.raw`(?:import|require)\(${fs}\)\)?\.(\w+)`, "g");
  for (const [, member] of text.matchAll(chained)) names.add(member!);
  return names;
}

function splitNames(list: string): string[] {
  return list
    .split(",")
    .map((part) =>
      part
        .replace(/^\s*type\s+/, "")
        .split(/\s+as\s+|:/)[0]!
        .trim(),
    )
    .filter((name) => name !== "");
}

/** The code without its comments (a doc example may show `writeFileSync`: it is not a call of the module). */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

function listTs(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return listTs(path);
    return entry.name.endsWith(".ts") ? [relative(".", path)] : [];
  });
}
