/**
 * `inspect REF` and `tags REPO`: what a registry (or, offline, the cache)
 * offers, without pulling.
 *
 * @module
 */

import { one, openCache, type Context } from "./context.ts";
import { EXIT_CODES, UsageError } from "../errors.ts";
import { formatBytes } from "../units.ts";
import { formatPlatform } from "../oci/platform.ts";
import { parseRegistryInput } from "./inputs.ts";
import { inspectImage, listRepositoryTags, type InspectedFile, type Inspection } from "../pull/inspect.ts";
import { escapeControl } from "./text.ts";

/** The commands of this module, by name. */
export const INSPECT_COMMANDS = { inspect: runInspect, tags: runTags };

async function runInspect(context: Context): Promise<number> {
  const ref = parseRegistryInput("inspect", one(context));
  const inspection = await inspectImage(openCache(context, { refresh: context.flags.refresh === true }), ref);
  context.print(context.flags.json ? JSON.stringify(inspection, null, 2) : describeInspection(inspection));
  return EXIT_CODES.ok;
}

async function runTags(context: Context): Promise<number> {
  const input = one(context, "repository");
  const repo = parseRegistryInput("tags", input);
  if (repo.digest !== undefined || /:[^/]*$/.test(input))
    throw new UsageError(`Cannot list tags of "${input}": give a repository without a tag or digest`);
  // A repository: its messages name it without the tag a reference takes by default.
  const tags = await listRepositoryTags(openCache(context), { ...repo, tag: undefined });
  context.print(context.flags.json ? JSON.stringify(tags) : tags.map(escapeControl).join("\n"));
  return EXIT_CODES.ok;
}

/** The inspection as text: the reference, then each manifest with its files. */
function describeInspection(inspection: Inspection): string {
  const lines = [
    `reference  ${inspection.reference}`,
    `digest     ${inspection.digest}`,
    `mediaType  ${inspection.mediaType}`,
  ];
  for (const manifest of inspection.manifests) {
    const platform = manifest.platform === undefined ? "manifest" : formatPlatform(manifest.platform);
    lines.push("", `${platform}  ${manifest.digest}`);
    if (manifest.files === undefined) lines.push("  (manifest not cached)");
    else if (manifest.files.length === 0) lines.push("  (no unikernel files)");
    const names = Math.max(0, ...(manifest.files ?? []).map((f) => f.name.length));
    for (const file of manifest.files ?? []) lines.push(`  ${file.name.padEnd(names)}  ${describeFile(file)}`);
  }
  return lines.map(escapeControl).join("\n");
}

function describeFile(file: InspectedFile): string {
  const size = (file.bytes === undefined ? "-" : formatBytes(file.bytes)).padStart(9);
  const where = file.path === undefined ? "" : `  ${file.path} in ${file.layer.slice(0, 19)}…`;
  const digest = file.digest ?? "(not taken out of its layer yet)";
  return `${size}  ${digest}${where}  ${file.cached ? "cached" : "not cached"}`;
}
