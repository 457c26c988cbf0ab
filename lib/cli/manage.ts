/**
 * The cache management commands: `ls`, `du`/`stats`, `gc`, `verify`, `rm`,
 * `prune --all`. Loaded only when one of them runs.
 *
 * @module
 */

import { pruneCache } from "../store/cleanup.ts";
import { registryOptions, type Context } from "./context.ts";
import { runDoctor } from "./doctor.ts";
import { isDigest } from "../oci/digest.ts";
import { EXIT_CODES, UsageError } from "../errors.ts";
import { takeInventory } from "../store/inventory.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import { pruneAll, removeTargets, type RemovalResult, type RemovalTarget } from "../store/remove.ts";
import { blobRows, cacheStats, cleanupJson, referenceRows, removalJson, verifyJson } from "../store/report.ts";
import { formatPlatform } from "../oci/platform.ts";
import { Store } from "../store/store.ts";
import { escapeControl } from "./text.ts";
import { formatBytes, formatDuration } from "../config/units.ts";
import { verifyCache } from "../store/verify.ts";

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
  noArgs(context);
  const checks = await runDoctor(context.config, registryOptions(context.config));
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
  const inventory = takeInventory(openStore(context));
  const now = Date.now();
  if (context.flags.blobs) {
    const blobs = blobRows(inventory);
    if (context.flags.json) return json(context, blobs);
    context.print(
      table(
        ["DIGEST", "SIZE", "LAST USE", "REFERENCES"],
        blobs.map((b) => [
          b.digest,
          formatBytes(b.bytes),
          ago(now, Date.parse(b.lastUsedAt)),
          String(b.references.length),
        ]),
      ),
    );
    return EXIT_CODES.ok;
  }
  const refs = referenceRows(inventory);
  if (context.flags.json) return json(context, refs);
  context.print(
    table(
      ["REFERENCE", "DIGEST", "PLATFORMS", "SIZE", "LAST USE"],
      refs.map((r) => [
        r.reference,
        r.digest.slice(7, 19),
        r.platforms.map(formatPlatform).join(", ") || "-",
        formatBytes(r.bytes),
        ago(now, Date.parse(r.lastUsedAt)),
      ]),
    ),
  );
  return EXIT_CODES.ok;
}

async function runStats(context: Context): Promise<number> {
  noArgs(context);
  const now = Date.now();
  const stats = cacheStats(takeInventory(openStore(context)), context.config, now);
  if (context.flags.json) return json(context, stats);
  context.print(
    [
      `cache       ${stats.cacheDir}`,
      `references  ${stats.references}`,
      `blobs       ${stats.blobs}`,
      `size        ${formatBytes(stats.bytes)} (limit ${formatBytes(stats.maxSizeBytes)}, ` +
        `${formatBytes(stats.overMaxSizeBytes)} over)`,
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
  const report = await pruneCache(openStore(context, true), {
    maxAgeMs: config.maxAgeMs,
    maxSizeBytes: config.maxSizeBytes,
    graceMs: config.graceMs,
    dryRun: flags["dry-run"] === true,
  });
  if (flags.json) return json(context, cleanupJson(report));
  const verb = report.dryRun ? "would remove" : "removed";
  const now = Date.now();
  const lines = report.removed.map(
    (r) => `${verb} ${r.name} (${formatBytes(r.bytes)}, last used ${ago(now, r.lastUseMs)}, by ${r.reason})`,
  );
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
    const reference = arg.includes("@") || arg.includes(":") || arg.includes("/");
    return { name: reference ? formatReference(parseReference(arg)) : arg };
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

function table(header: string[], cells: string[][]): string {
  const rows = cells.map((row) => row.map(escapeControl));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "))
    .join("\n");
}

function ago(now: number, ms: number): string {
  return `${formatDuration(Math.max(0, now - ms))} ago`;
}
