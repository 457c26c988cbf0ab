/**
 * `inspect REF` and `tags REPO`: what a registry (or, offline, the cache)
 * offers, without pulling.
 *
 * @module
 */

import { EXIT_CODES, UsageError } from "../errors.ts";
import { formatPlatform } from "../oci/platform.ts";
import { type Inspection, inspectImage, listRepositoryTags } from "../pull/inspect.ts";
import { formatBytes } from "../units.ts";
import { type Context, loadPolicy, one, openCache } from "./context.ts";
import { parseRegistryInput } from "./inputs.ts";
import { ellipsis, escapeControl, fitReference, terminalWidth } from "./text.ts";

/** The commands of this module, by name. */
export const INSPECT_COMMANDS = { inspect: runInspect, tags: runTags };

async function runInspect(context: Context): Promise<number> {
  const ref = parseRegistryInput("inspect", one(context));
  const cache = openCache(context, { refresh: context.flags.refresh === true });
  const inspection = await inspectImage(cache, ref, loadPolicy(context));
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

/**
 * The inspection as text: the reference, then each manifest with its files. On a terminal (or with `COLUMNS`), a
 * line that would not fit gives its digests as `ls` does (`sha256:` and 12 digits), then loses its end.
 */
function describeInspection(inspection: Inspection, width = terminalWidth() ?? Infinity): string {
  const fit = (...forms: string[]): string => {
    const escaped = forms.map(escapeControl);
    return escaped.find((line) => line.length <= width) ?? ellipsis(escaped.at(-1)!, width);
  };
  const lines = [
    fit(`reference  ${inspection.reference}`, `reference  ${fitReference(inspection.reference, width - 11)}`),
    fit(`digest     ${inspection.digest}`, `digest     ${short(inspection.digest)}`),
    fit(`mediaType  ${inspection.mediaType}`),
  ];
  for (const manifest of inspection.manifests) {
    const platform = manifest.platform === undefined ? "manifest" : formatPlatform(manifest.platform);
    lines.push("", fit(`${platform}  ${manifest.digest}`, `${platform}  ${short(manifest.digest)}`));
    if (manifest.files === undefined) lines.push("  (manifest not cached)");
    else if (manifest.files.length === 0) lines.push("  (no unikernel files)");
    const names = Math.max(0, ...(manifest.files ?? []).map((f) => f.name.length));
    for (const file of manifest.files ?? []) {
      const size = file.bytes === undefined ? "-" : formatBytes(file.bytes);
      const head = `  ${file.name.padEnd(names)}  ${size.padStart(9)}`;
      const state = (file.cached ? "cached" : "not cached").padEnd(10);
      const digest = file.digest ?? "(not taken out of its layer yet)";
      const where = file.path === undefined ? "" : `  ${file.path} in ${short(file.layer)}`;
      lines.push(
        fit(
          `${head}  ${state}  ${digest}${where}`,
          `${head}  ${state}  ${file.digest === undefined ? digest : short(file.digest)}${where}`,
        ),
      );
    }
  }
  for (const signature of inspection.signatures) {
    const what = signature.form === "bundle" ? `bundle ${signature.predicateType ?? "?"}` : "simple signing";
    const met = signature.met === true ? "  met the policy" : "";
    lines.push("", fit(`signature  ${what}  ${signature.tag}  ${short(signature.manifest)}${met}`));
    for (const payload of signature.payloads)
      lines.push(
        fit(`  ${short(payload.digest)}  names ${payload.identity ?? "?"} for ${payload.signedDigest ?? "?"}`),
      );
  }
  if (inspection.signatures.length === 0) lines.push("", "signatures  none");
  if (inspection.accepted !== undefined)
    lines.push("", fit(inspection.accepted ? "policy  accepts it" : `policy  refuses it: ${inspection.reason}`));
  return lines.join("\n");
}

/** A digest as `ls` prints it: `sha256:` and its first 12 digits, then `…`. */
function short(digest: string): string {
  return `${digest.slice(0, 19)}…`;
}
