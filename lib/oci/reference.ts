/**
 * Parse and normalise image references: `[host[:port]/]repo[:tag][@sha256:<hex>]`,
 * the grammar of the distribution project's `reference` package, and
 * `oci:DIR[:tag]` for a local OCI image layout read in place.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { type Digest, parseDigest } from "./digest.ts";
import { canonicalRegistry, DOCKER_HUB, HOST_RE } from "./host.ts";

/** A parsed, normalised reference to an image in a remote registry. */
export interface Reference {
  /** Registry host with optional port, e.g. `127.0.0.1:5000` or `docker.io`. */
  registry: string;
  /** Repository path, e.g. `unikraft/nginx` or `library/alpine`. */
  repository: string;
  /** The tag, when the reference names one. */
  tag?: string;
  /** The digest, when the reference pins one. */
  digest?: Digest;
}

/** A local OCI image layout directory, read where it is and never cached. */
export interface LayoutSource {
  /** The layout directory. */
  dir: string;
  /** The `org.opencontainers.image.ref.name` to select, when given. */
  tag?: string;
}

/** The registry that a reference without a host names. */
export const DEFAULT_REGISTRY = DOCKER_HUB;
/** The tag that a reference without a tag or digest names. */
export const DEFAULT_TAG = "latest";
/** The longest repository name a registry accepts (distribution's limit). */
export const MAX_NAME_LENGTH = 255;

/**
 * Parse a reference and fill in Docker Hub's defaults (`docker.io`,
 * `library/`) and the `latest` tag when neither tag nor digest is given.
 *
 * @throws {UsageError} naming the malformed part.
 * @example Parse a reference
 * ```ts
 * import assert from "node:assert";
 * import { parseReference } from "ocicache";
 * const ref = parseReference("127.0.0.1:5000/unikraft/nginx:1.25");
 * assert.deepEqual(ref, { registry: "127.0.0.1:5000", repository: "unikraft/nginx", tag: "1.25" });
 * ```
 */
export function parseReference(input: string): Reference {
  if (typeof input !== "string" || input.length === 0) {
    throw new UsageError("Cannot parse reference: it is empty");
  }
  if (input.length > 512 || /[\s\0]/.test(input) || /[^\x21-\x7e]/.test(input)) {
    throw new UsageError(
      `Cannot parse reference "${printable(input)}": it contains spaces, control or non-ASCII characters`,
    );
  }
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    const raw = rest.slice(at + 1);
    try {
      digest = parseDigest(raw);
    } catch (cause) {
      throw new UsageError(
        `Cannot parse reference "${input}": bad digest "${raw}" (expected sha256:<64 lowercase hex>)`,
        { cause },
      );
    }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw new UsageError(
        `Cannot parse reference "${input}": bad tag "${tag}" (letters, digits, "_", "." and "-", at most 128, not ` +
          `starting with "." or "-")`,
      );
    }
  }
  const { registry, repository } = splitName(rest, input);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return { registry, repository, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) };
}

/**
 * Format a reference in its normalised form, the inverse of `parseReference`.
 * @example The normalised name of a reference
 * ```ts
 * import assert from "node:assert";
 * import { formatReference, parseReference } from "ocicache";
 * assert.equal(formatReference(parseReference("alpine")), "docker.io/library/alpine:latest");
 * ```
 */
export function formatReference(ref: Reference): string {
  let out = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) out += `:${ref.tag}`;
  if (ref.digest !== undefined) out += `@${ref.digest}`;
  return out;
}

/**
 * Parse `oci:DIR[:tag]`, or return `undefined` when the input is not a layout source.
 * @example Tell a local layout from a registry reference
 * ```ts
 * import assert from "node:assert";
 * import { parseLayoutSource } from "ocicache";
 * assert.deepEqual(parseLayoutSource("oci:/tmp/image:1.25"), { dir: "/tmp/image", tag: "1.25" });
 * assert.equal(parseLayoutSource("127.0.0.1:5000/unikraft/nginx:1.25"), undefined);
 * ```
 */
export function parseLayoutSource(input: string): LayoutSource | undefined {
  if (!input.startsWith("oci:")) return undefined;
  const body = input.slice(4);
  const colon = body.lastIndexOf(":");
  const after = body.slice(colon + 1);
  const source: LayoutSource =
    colon > 0 && !after.includes("/") && REF_NAME_RE.test(after)
      ? { dir: body.slice(0, colon), tag: after }
      : { dir: body };
  if (source.dir.length === 0 || source.dir.includes("\0")) {
    throw new UsageError(`Cannot parse source "${printable(input)}": expected oci:DIR[:tag]`);
  }
  return source;
}

/** The registry host part of a name, with Docker Hub's aliases folded. */
function splitName(name: string, input: string): { registry: string; repository: string } {
  const slash = name.indexOf("/");
  const first = slash === -1 ? "" : name.slice(0, slash);
  let registry = DEFAULT_REGISTRY;
  let repository = name;
  if (slash !== -1 && (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))) {
    registry = first;
    repository = name.slice(slash + 1);
    if (!HOST_RE.test(registry)) {
      const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(input)
        ? " (a reference has no scheme: drop the http:// or https://)"
        : "";
      throw new UsageError(`Cannot parse reference "${input}": bad registry host "${registry}"${scheme}`);
    }
    const port = registry.match(/:(\d+)$/)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
      throw new UsageError(`Cannot parse reference "${input}": bad port "${port}" (1-65535)`);
    }
  }
  registry = canonicalRegistry(registry);
  if (repository.length === 0) {
    throw new UsageError(`Cannot parse reference "${input}": the repository is empty`);
  }
  for (const component of repository.split("/")) {
    if (!COMPONENT_RE.test(component)) {
      throw new UsageError(
        `Cannot parse reference "${input}": bad repository component "${component}" (lowercase letters, digits and ` +
          `single separators ".", "_", "__", "-")`,
      );
    }
  }
  if (registry === DEFAULT_REGISTRY && !repository.includes("/")) repository = `library/${repository}`;
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) {
    throw new UsageError(
      `Cannot parse reference "${input.slice(0, 40)}…": the name is longer than ${MAX_NAME_LENGTH} characters`,
    );
  }
  return { registry, repository };
}

function printable(input: string): string {
  return JSON.stringify(input.slice(0, 80)).slice(1, -1);
}

/** A tag, as the distribution spec's grammar has it. */
export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const REF_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]*$/;
