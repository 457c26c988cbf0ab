/**
 * The one vocabulary of every `--json` output and every admin API answer: each key ocicache prints, declared once
 * with what its value is. A byte count is `bytes` or `…Bytes`, any other count `count` or `…Count`, a point in time
 * `…At` (ISO 8601, or `null`), a duration `…Seconds`, a digest whole; a reference name is `reference`, and a list
 * of them `references`. `vocabularyProblems` walks a printed value against it: the test suite runs every command's
 * `--json` and every route through it, so that a key printed under another name, or with another kind of value,
 * fails.
 *
 * @module
 */

/** What a key's value is. */
export type ValueKind =
  | "bytes"
  | "count"
  | "time"
  | "seconds"
  | "digest"
  | "reference"
  | "references"
  | "boolean"
  | "text"
  | "file-name"
  | "platform"
  | "list"
  | "object";

/** Every key printed, and its kind; besides, the suffixes Bytes, Count, At, Seconds and Digest. */
export const JSON_KEYS: Readonly<Record<string, ValueKind>> = {
  bytes: "bytes",
  count: "count",
  pid: "count",
  digest: "digest",
  manifest: "digest",
  layer: "digest",
  recorded: "digest",
  actual: "digest",
  next: "digest",
  reference: "reference",
  references: "references",
  name: "file-name",
  role: "text",
  path: "text",
  cacheDir: "text",
  mediaType: "text",
  kind: "text",
  reason: "text",
  step: "text",
  event: "text",
  tag: "text",
  identity: "text",
  form: "text",
  predicateType: "text",
  subject: "text",
  detail: "text",
  fix: "text",
  status: "text",
  code: "text",
  message: "text",
  os: "text",
  architecture: "text",
  variant: "text",
  plat: "text",
  hit: "boolean",
  cached: "boolean",
  cloned: "boolean",
  accepted: "boolean",
  met: "boolean",
  signatureMoved: "boolean",
  signature: "digest",
  moved: "boolean",
  ok: "boolean",
  dryRun: "boolean",
  incomplete: "boolean",
  repaired: "boolean",
  platform: "platform",
  platforms: "list",
  files: "list",
  manifests: "list",
  removed: "list",
  steps: "list",
  corrupt: "list",
  wrongFiles: "list",
  missing: "list",
  blobs: "list",
  signatures: "list",
  payloads: "list",
};

const SUFFIXES: Array<[RegExp, ValueKind]> = [
  [/Bytes$/, "bytes"],
  [/Count$/, "count"],
  [/At$/, "time"],
  [/Seconds$/, "seconds"],
  [/Digest$/, "digest"],
];

/**
 * What in `value` (a parsed `--json` output or API answer) goes against the vocabulary: one line per key, with its
 * path. None for a value that keeps it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { vocabularyProblems } from "./vocabulary.ts";
 * assert.deepEqual(vocabularyProblems({ reference: "docker.io/library/a:1", bytes: 3 }), []);
 * assert.deepEqual(vocabularyProblems({ name: "docker.io/library/a:1" }), [
 *   '$.name: "docker.io/library/a:1" is not a file-name',
 * ]);
 * ```
 */
export function vocabularyProblems(value: unknown, path = "$"): string[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => vocabularyProblems(item, `${path}[${i}]`));
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([key, item]) => {
    const at = `${path}.${key}`;
    const kind = JSON_KEYS[key] ?? SUFFIXES.find(([re]) => re.test(key))?.[1];
    if (kind === undefined) return [`${at}: a key the vocabulary does not declare`];
    if (!fits(kind, item)) return [`${at}: ${JSON.stringify(item)?.slice(0, 80)} is not a ${kind}`];
    return kind === "list" || kind === "object" || kind === "platform" ? vocabularyProblems(item, at) : [];
  });
}

function fits(kind: ValueKind, value: unknown): boolean {
  const count = Number.isSafeInteger(value) && (value as number) >= 0;
  switch (kind) {
    case "bytes":
    case "count":
      return count;
    case "seconds":
      return typeof value === "number" && value >= 0;
    case "time":
      return value === null || (typeof value === "string" && !Number.isNaN(Date.parse(value)) && value.endsWith("Z"));
    case "digest":
      return typeof value === "string" && /^sha256:[0-9a-f]{64}$/.test(value);
    case "reference":
      return isReferenceName(value);
    case "references":
      return Array.isArray(value) && value.every(isReferenceName);
    case "boolean":
      return typeof value === "boolean";
    case "text":
      return typeof value === "string";
    case "file-name":
      return typeof value === "string" && /^(kernel|initrd|kernel\.dbg|rom\d{1,6})$/.test(value);
    case "platform":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    case "list":
      return Array.isArray(value);
    case "object":
      return typeof value === "object" && value !== null;
  }
}

/** A reference as ocicache names one: `host/repository` with a tag or digest (or `oci:DIR…`), no space. */
function isReferenceName(value: unknown): boolean {
  return typeof value === "string" && /^(oci:\S+|[^\s/]+\/\S+[:@]\S+)$/.test(value);
}
