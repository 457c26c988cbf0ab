/**
 * The import-direction check (`bun scripts/check-imports.ts`, run by
 * `scripts/test.sh`): every import in `lib/` (static, `import type`, and lazy
 * `import()`) flows down the layers of docs/ARCHITECTURE.md, no two modules
 * import each other through any chain, the CLI entry's static imports reach
 * no `node:` module, configuration (but its table of settings, which its
 * options come from) or store, and neither they nor the pull
 * commands' reach the walk of an image, the registry, the server, hono or zod;
 * and no module outside `lib/store/` imports the store's own `paths.ts` or
 * `writer.ts` (the write protocol and the layout are the store's).
 * Prints each violation on a line of its own and exits 1 when there is one.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const root = join(import.meta.dir, "..");

/** What each layer may import, besides itself. */
const ALLOWED: Record<string, string[]> = {
  base: [],
  oci: ["base"],
  store: ["oci", "base"],
  registry: ["oci", "base"],
  pull: ["store", "registry", "oci", "base"],
  config: ["oci", "base"],
  server: ["pull", "config", "store", "registry", "oci", "base"],
  cli: ["server", "pull", "config", "store", "registry", "oci", "base"],
};

/**
 * Modules a warm `path` must not evaluate: neither the CLI entry's static imports nor those of the pull commands
 * may reach them (the walk of an image, its layers and outputs, the registry, the server).
 */
const NOT_ON_THE_WARM_PATH = [
  /^lib\/server\//,
  /^lib\/registry\//,
  /^lib\/pull\/(download|image|place|source|layout-source|blobs|members|blob-stream)\.ts$/,
  /^lib\/store\/(ingest|output)\.ts$/,
  /^lib\/oci\/tar\.ts$/,
  /^hono/,
  /^zod/,
];
/** What `--version`, help and a usage error must not evaluate: the CLI entry's static imports may not reach them. */
const NOT_AT_START = [...NOT_ON_THE_WARM_PATH, /^node:/, /^lib\/config\/(?!settings\.ts$)/, /^lib\/store\//];
const CLI_ENTRY = "lib/cli/main.ts";
const PULL_COMMANDS = "lib/cli/pull.ts";

interface Edge {
  to: string;
  kind: "static" | "type" | "lazy";
}

const problems: string[] = [];
const files = [...listTs("lib"), "mod.ts"];
const graph = new Map<string, Edge[]>(files.map((file) => [file, importsOf(file)]));

for (const [file, edges] of graph) {
  const from = layerOf(file);
  for (const edge of edges) {
    if (!edge.to.startsWith("lib/") || from === "entry") continue;
    const to = layerOf(edge.to);
    if (to !== from && !ALLOWED[from]!.includes(to))
      problems.push(`${file} imports ${edge.to}: ${from}/ may not import ${to}/ (${edge.kind})`);
  }
}
/** Modules of the store that no other layer may import. */
const STORE_PRIVATE = ["lib/store/paths.ts", "lib/store/writer.ts"];
for (const [file, edges] of graph) {
  if (file.startsWith("lib/store/")) continue;
  for (const edge of edges)
    if (STORE_PRIVATE.includes(edge.to))
      problems.push(`${file} imports ${edge.to}: it is the store's own (use the store's ingest, output or files)`);
}
for (const cycle of findCycles(graph)) problems.push(`import cycle: ${cycle.join(" -> ")}`);
for (const [entry, unwanted] of [
  [CLI_ENTRY, NOT_AT_START],
  [PULL_COMMANDS, NOT_ON_THE_WARM_PATH],
] as const) {
  for (const reached of staticClosure(entry)) {
    if (unwanted.some((re) => re.test(reached)))
      problems.push(`${entry} loads ${reached} at start (import it lazily where it is needed)`);
  }
}

if (problems.length > 0) {
  for (const problem of problems) console.error(`check-imports: ${problem}`);
  process.exit(1);
}
console.error(`check-imports: ${files.length} modules, imports flow down the layers, no cycle`);

function listTs(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return listTs(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** `base` for `lib/errors.ts` and `lib/home.ts`, else the folder under `lib/`, or `entry` for `mod.ts`. */
function layerOf(file: string): string {
  if (file === "mod.ts") return "entry";
  const parts = file.split("/");
  const layer = parts.length === 2 ? "base" : parts[1]!;
  if (ALLOWED[layer] === undefined)
    problems.push(`${file} is in no layer (lib/${layer}/ is not one of ${Object.keys(ALLOWED).join(", ")})`);
  return layer;
}

/**
 * The imports of a file: top-level `import`/`export … from` statements (doc
 * comments are indented, so their examples are not taken for imports) and
 * every `import("…")`. Bare specifiers are kept as they are (`hono`, `node:fs`).
 */
function importsOf(file: string): Edge[] {
  const text = readFileSync(join(root, file), "utf8");
  const edges: Edge[] = [];
  const resolve = (spec: string) => (spec.startsWith(".") ? relative(root, join(root, dirname(file), spec)) : spec);
  for (const match of text.matchAll(/^(import|export)(\s+type)?\b[^;]*?\bfrom\s+["']([^"']+)["']/gms)) {
    edges.push({ to: resolve(match[3]!), kind: match[2] === undefined ? "static" : "type" });
  }
  for (const match of text.matchAll(/^import\s+["']([^"']+)["']/gm))
    edges.push({ to: resolve(match[1]!), kind: "static" });
  for (const match of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g))
    edges.push({ to: resolve(match[1]!), kind: "lazy" });
  return edges;
}

/** Every cycle among the modules, each reported once, as the chain of files. */
function findCycles(modules: Map<string, Edge[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const { to } of modules.get(file) ?? []) {
      if (!modules.has(to)) continue;
      if (state.get(to) === "open") cycles.push([...stack.slice(stack.indexOf(to)), to]);
      else if (state.get(to) === undefined) visit(to);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of modules.keys()) if (state.get(file) === undefined) visit(file);
  return cycles;
}

/** The modules a file evaluates before its first line runs: its static (not type, not lazy) imports, transitively. */
function staticClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const walk = (file: string) => {
    for (const { to, kind } of graph.get(file) ?? []) {
      if (kind !== "static" || seen.has(to)) continue;
      seen.add(to);
      walk(to);
    }
  };
  walk(entry);
  return seen;
}
