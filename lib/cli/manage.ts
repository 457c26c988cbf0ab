/**
 * The cache management commands: `ls`, `du`/`stats`, `gc`, `verify`, `rm`,
 * `prune --all`. Loaded only when one of them runs.
 *
 * @module
 */

import { configFileFor } from "../config/config.ts";
import { EXIT_CODES, UsageError } from "../errors.ts";
import { isDigest } from "../oci/digest.ts";
import { HOST_RE } from "../oci/host.ts";
import { formatPlatform } from "../oci/platform.ts";
import type { Reference } from "../oci/reference.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import { collectGarbage } from "../store/cleanup.ts";
import { lexists } from "../store/files.ts";
import { takeInventory } from "../store/inventory.ts";
import { pruneAll, type RemovalResult, type RemovalTarget, removeTargets } from "../store/remove.ts";
import {
  blobRows,
  cacheStats,
  cleanupJson,
  type ReferenceRow,
  referenceRows,
  removalJson,
  verifyJson,
} from "../store/report.ts";
import { Store } from "../store/store.ts";
import { verifyCache } from "../store/verify.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { type Context, cleanupLimits, registryOptions } from "./context.ts";
import { runDoctor } from "./doctor.ts";
import { parseRegistryInput } from "./inputs.ts";
import { ellipsis, escapeControl, fitReference, terminalWidth } from "./text.ts";

/** The commands of this module, by name. */
export const MANAGE_COMMANDS = {
  ls: runLs,
  stats: runStats,
  gc: runGc,
  verify: runVerify,
  rm: runRm,
  prune: runPrune,
  doctor: runDoctorCommand,
};

async function runDoctorCommand(context: Context): Promise<number> {
  // A host (127.0.0.1:5000) asks about that registry, a reference (host/repo:tag) about its registry and itself.
  const named = { hosts: [] as string[], references: [] as Reference[] };
  for (const arg of context.args) {
    if (arg.includes("/")) named.references.push(parseRegistryInput("doctor", arg));
    else if (HOST_RE.test(arg)) named.hosts.push(arg);
    else throw new UsageError(`Cannot check "${arg.slice(0, 80)}": expected a registry host or a reference`);
  }
  const configFile = configFileFor(context.flags.config === undefined ? {} : { configPath: context.flags.config });
  const checks = await runDoctor(context.config, registryOptions(context.config), configFile, named);
  if (context.flags.json) {
    context.print(JSON.stringify(checks, null, 2));
  } else {
    printLines(
      context,
      checks.flatMap((c) => [
        `${c.ok ? "ok  " : "FIX "}  ${c.subject.padEnd(8)}  ${c.detail}`,
        ...(c.fix === undefined ? [] : [`                ${c.fix}`]),
      ]),
    );
  }
  return checks.every((c) => c.ok) ? EXIT_CODES.ok : EXIT_CODES.other;
}

async function runLs(context: Context): Promise<number> {
  noArgs(context);
  // An empty cache and no cache at all are two answers: a mistyped --cache-dir must not look like an empty cache.
  if (!lexists(context.config.cacheDir)) {
    if (context.flags.json) return json(context, []);
    context.print(`no cache at ${context.config.cacheDir}`);
    return EXIT_CODES.ok;
  }
  const inventory = takeInventory(openStore(context));
  const now = Date.now();
  if (context.flags.blobs) {
    const blobs = blobRows(inventory);
    if (context.flags.json) return json(context, blobs);
    if (blobs.length === 0) return printEmpty(context);
    const cells = blobs.map((b) => [
      b.digest,
      formatBytes(b.bytes),
      ago(now, Date.parse(b.lastUsedAt)),
      String(b.references.length),
    ]);
    context.print(table(["DIGEST", "SIZE", "LAST USE", "REFERENCES"], cells, [{ column: 0, min: 19 }]));
    return EXIT_CODES.ok;
  }
  const refs = referenceRows(inventory);
  if (context.flags.json) return json(context, refs);
  if (refs.length === 0) {
    if (inventory.blobs.size === 0) return printEmpty(context);
    context.print(`no references cached (${inventory.blobs.size} blobs without one: ocicache ls --blobs)`);
    return EXIT_CODES.ok;
  }
  // SIZE is what the image is; DERIVED (shown when there are any) the files taken out of its layers besides.
  const derived = refs.some((r) => r.derivedBytes > 0);
  const cells = groupByImage(refs).map((rows) => [
    imageName(rows),
    rows[0]!.digest.slice(7, 19),
    rows[0]!.platforms.map(formatPlatform).join(", ") || "-",
    formatBytes(rows[0]!.bytes - rows[0]!.derivedBytes),
    ...(derived ? [rows[0]!.derivedBytes > 0 ? formatBytes(rows[0]!.derivedBytes) : "-"] : []),
    ago(now, Math.max(...rows.map((r) => Date.parse(r.lastUsedAt)))),
  ]);
  const shrink = [
    { column: 0, min: 24, fit: fitReference },
    { column: 2, min: 12 },
  ];
  const header = ["REFERENCE", "DIGEST", "PLATFORMS", "SIZE", ...(derived ? ["DERIVED"] : []), "LAST USE"];
  context.print(table(header, cells, shrink));
  return EXIT_CODES.ok;
}

function printEmpty(context: Context): number {
  context.print("cache is empty");
  return EXIT_CODES.ok;
}

/** The rows of one image: the names of one repository that resolve to one digest (its tags and its digest form). */
function groupByImage(refs: ReferenceRow[]): ReferenceRow[][] {
  const groups = new Map<string, ReferenceRow[]>();
  for (const row of refs) {
    const key = `${repositoryOf(row.reference)}@${row.digest}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.values()];
}

/** `host/repo:tag` for each tag (`host/repo:1, :latest`), or `host/repo@sha256:<12>…` with no tag. */
function imageName(rows: ReferenceRow[]): string {
  const repository = repositoryOf(rows[0]!.reference);
  const tags = rows.map((r) => r.reference).filter((name) => !name.includes("@"));
  if (tags.length === 0) return `${repository}@${rows[0]!.digest.slice(0, 19)}…`;
  return [tags[0]!, ...tags.slice(1).map((name) => name.slice(repository.length))].join(", ");
}

/** A cached name's `host/repository`: what comes before its tag or digest. */
function repositoryOf(name: string): string {
  try {
    const ref = parseReference(name);
    return `${ref.registry}/${ref.repository}`;
  } catch {
    return name;
  }
}

async function runStats(context: Context): Promise<number> {
  noArgs(context);
  const now = Date.now();
  const stats = cacheStats(takeInventory(openStore(context)), context.config, now);
  if (context.flags.json) return json(context, stats);
  context.print(
    [
      `cache       ${stats.cacheDir}`,
      `references  ${stats.referenceCount}`,
      `blobs       ${stats.blobCount}`,
      `size        ${formatBytes(stats.bytes)} (limit ${formatBytes(stats.maxSizeBytes)}, ` +
        `${formatBytes(stats.overMaxSizeBytes)} over)`,
      `derived     ${formatBytes(stats.derivedBytes)} (files taken out of layers, made again when needed)`,
      `oldest use  ${stats.oldestUseAt === null ? "-" : `${ago(now, Date.parse(stats.oldestUseAt))}`}`,
      `newest use  ${stats.newestUseAt === null ? "-" : `${ago(now, Date.parse(stats.newestUseAt))}`}`,
      `unused for longer than ${formatDuration(stats.maxAgeSeconds * 1000)}: ${formatBytes(stats.overMaxAgeBytes)}`,
    ].join("\n"),
  );
  return EXIT_CODES.ok;
}

async function runGc(context: Context): Promise<number> {
  noArgs(context);
  const { config, flags } = context;
  const report = await collectGarbage(openStore(context, true), {
    ...cleanupLimits(config),
    dryRun: flags["dry-run"] === true,
  });
  if (flags.json) return json(context, cleanupJson(report));
  const verb = report.dryRun ? "would remove" : "removed";
  const now = Date.now();
  const lines = report.removed.map((r) => {
    const derived = r.kind === "derived" ? "derived, " : "";
    return `${verb} ${r.name} (${derived}${formatBytes(r.bytes)}, last used ${ago(now, r.lastUseMs)}, by ${r.reason})`;
  });
  lines.push(
    `${report.dryRun ? "would free" : "freed"} ${formatBytes(report.freedBytes)}; ` +
      `${formatBytes(report.remainingBytes)} remain`,
  );
  if (report.keptRecentBytes > 0)
    lines.push(
      `kept ${formatBytes(report.keptRecentBytes)} used within the grace period (${formatDuration(config.graceMs)}), ` +
        `over the size limit (${formatBytes(config.maxSizeBytes)})`,
    );
  printLines(context, lines);
  return EXIT_CODES.ok;
}

async function runVerify(context: Context): Promise<number> {
  noArgs(context);
  const report = await verifyCache(openStore(context, context.flags.repair === true), {
    repair: context.flags.repair === true,
  });
  const failed = (report.corrupt.length > 0 || report.wrongFiles.length > 0) && !report.repaired;
  if (context.flags.json) {
    json(context, verifyJson(report));
  } else {
    const lines = [
      ...report.corrupt.map(
        (c) =>
          `${report.repaired ? "removed corrupt" : "corrupt"} ${c.digest} ` +
          `(${c.actual === undefined ? c.reason : `its content hashes to ${c.actual}`})`,
      ),
      ...report.wrongFiles.map(
        (w) =>
          `${report.repaired ? "dropped wrong record" : "wrong record"} ${w.recorded} for "${w.path}" of ${w.layer} ` +
          `in ${w.reference} (the layer holds ${w.actual ?? "no such file"})`,
      ),
      ...report.missing.map((m) => `missing ${m.digest} of ${m.reference}`),
      `checked ${report.checked} blobs (${formatBytes(report.bytes)}) in ${formatDuration(report.durationMs)}: ` +
        `${report.corrupt.length} corrupt, ${report.wrongFiles.length} wrong records, ${report.missing.length} missing`,
    ];
    printLines(context, lines);
  }
  return failed ? EXIT_CODES.integrity : EXIT_CODES.ok;
}

async function runRm(context: Context): Promise<number> {
  if (context.args.length === 0) throw new UsageError("Cannot run rm: expected one or more references or digests");
  const targets = context.args.map((arg): RemovalTarget => {
    if (isDigest(arg)) return { digest: arg };
    const prefix = /^(?:sha256:)?([0-9a-f]{7,64})$/.exec(arg)?.[1];
    if (prefix !== undefined) return { prefix };
    if (/^(?:sha256:)?[0-9a-f]{1,6}$/.test(arg))
      throw new UsageError(`Cannot remove "${arg}": a digest prefix needs at least 7 hex digits (ls prints 12)`);
    const reference = arg.includes("@") || arg.includes(":") || arg.includes("/");
    return { name: reference ? formatReference(parseRegistryInput("rm", arg)) : arg };
  });
  return printRemoval(context, await removeTargets(openStore(context, true), targets));
}

async function runPrune(context: Context): Promise<number> {
  noArgs(context);
  if (!context.flags.all) throw new UsageError("Cannot run prune without --all (to remove by age or size, use gc)");
  return printRemoval(context, await pruneAll(openStore(context, true)));
}

function printRemoval(context: Context, result: RemovalResult): number {
  if (context.flags.json) return json(context, removalJson(result));
  printLines(context, [
    ...result.removed.map((r) => `removed ${r.name} (${formatBytes(r.bytes)})`),
    `freed ${formatBytes(result.freedBytes)}`,
  ]);
  return EXIT_CODES.ok;
}

/** The cache's store; the commands that change it lay out a missing cache first. */
function openStore(context: Context, changes = false): Store {
  const store = new Store(context.config.cacheDir);
  if (changes) store.init();
  return store;
}

function noArgs(context: Context): void {
  if (context.args.length > 0) throw new UsageError(`Cannot run this command with arguments: "${context.args[0]}"`);
}

/**
 * Lines of text that may hold names from the cache or text from a registry: each printed with its control characters
 * escaped.
 */
function printLines(context: Context, lines: string[]): void {
  context.print(lines.map(escapeControl).join("\n"));
}

function json(context: Context, value: unknown): number {
  context.print(JSON.stringify(value, null, 2));
  return EXIT_CODES.ok;
}

/** A column cut to fit the width: down to `min` characters, by `fit` (default: its end cut with `…`). */
interface Shrink {
  column: number;
  min: number;
  fit?: (text: string, width: number) => string;
}

/**
 * Columns padded to their widest cell. On a terminal (or with `COLUMNS` set), the `shrink` columns are cut, in order
 * and down to their `min`, until a row fits the width.
 */
function table(header: string[], cells: string[][], shrink: Shrink[]): string {
  const rows = cells.map((row) => row.map(escapeControl));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const over = (terminalWidth() ?? Infinity) - (widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1));
  let excess = -over;
  for (const { column, min } of shrink) {
    if (excess <= 0) break;
    const cut = Math.min(excess, Math.max(0, widths[column]! - min));
    widths[column]! -= cut;
    excess -= cut;
  }
  const fits = header.map((_, i) => shrink.find((s) => s.column === i)?.fit ?? ellipsis);
  return [header, ...rows]
    .map((r) =>
      r.map((cell, i) => (i === r.length - 1 ? cell : fits[i]!(cell, widths[i]!).padEnd(widths[i]!))).join("  "),
    )
    .join("\n");
}

function ago(now: number, ms: number): string {
  return `${formatDuration(Math.max(0, now - ms))} ago`;
}
