/**
 * A signature policy in the format podman and skopeo users already have
 * (containers-policy.json(5)): `default` and the `docker` transport's scopes
 * (`host`, `host/namespace`, `host/repo`, `host/repo:tag`; the most specific
 * wins), each a list of requirements that must all hold:
 * `insecureAcceptAnything`, `reject`, and `sigstoreSigned` with `keyPath`,
 * `keyPaths` or `keyData`, and a `signedIdentity` of
 * `matchRepoDigestOrExact` (the default), `matchRepository`,
 * `exactRepository` or `exactReference`. The whole file is checked when it is
 * read: anything ocicache does not implement (`signedBy`, Fulcio, Rekor,
 * `remapIdentity`, a wildcard scope), in any scope, is a usage error naming
 * it, never accepted silently.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { isObject } from "./json.ts";
import type { Reference } from "./reference.ts";

/** What an identity in a signature must be, for the image asked for. */
export type SignedIdentity =
  | { type: "matchRepoDigestOrExact" }
  | { type: "matchRepository" }
  | { type: "exactRepository"; dockerRepository: string }
  | { type: "exactReference"; dockerReference: string };

/** One requirement of a scope. */
export type Requirement =
  | { type: "insecureAcceptAnything" }
  | { type: "reject" }
  | { type: "sigstoreSigned"; keys: Array<{ path?: string; data?: string }>; signedIdentity: SignedIdentity };

/** A checked policy: the default requirements, and the docker transport's scopes. */
export interface Policy {
  default: Requirement[];
  docker: Map<string, Requirement[]>;
}

/**
 * Parse and check a policy file's text; `where` names it in messages.
 *
 * @throws {UsageError} naming the first thing that is not a policy ocicache implements.
 * @example A policy that accepts one repository's images signed by a key, and rejects the rest
 * ```ts
 * import assert from "node:assert";
 * import { parsePolicy, requirementsFor } from "./policy.ts";
 * import { parseReference } from "./reference.ts";
 * const policy = parsePolicy(JSON.stringify({
 *   default: [{ type: "reject" }],
 *   transports: { docker: { "127.0.0.1:5000/unikraft": [{ type: "sigstoreSigned", keyPath: "cosign.pub" }] } },
 * }), "policy.json");
 * const nginx = parseReference("127.0.0.1:5000/unikraft/nginx:1.25");
 * assert.equal(requirementsFor(policy, nginx)[0]!.type, "sigstoreSigned");
 * assert.equal(requirementsFor(policy, parseReference("127.0.0.1:5000/other:1"))[0]!.type, "reject");
 * assert.throws(() => parsePolicy('{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}', "policy.json"));
 * ```
 */
export function parsePolicy(text: string, where: string): Policy {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Cannot read the policy "${where}": ${(error as Error).message}`);
  }
  const fail = (path: string, what: string) => new UsageError(`Cannot use the policy "${where}": ${path}: ${what}`);
  if (!isObject(raw)) throw fail("$", "expected an object");
  for (const key of Object.keys(raw))
    if (key !== "default" && key !== "transports") throw fail(`$.${key}`, "unknown key");
  const policy: Policy = { default: requirements(raw.default, "$.default", fail), docker: new Map() };
  if (raw.transports === undefined) return policy;
  if (!isObject(raw.transports)) throw fail("$.transports", "expected an object");
  for (const [transport, scopes] of Object.entries(raw.transports)) {
    const at = `$.transports.${transport}`;
    if (!isObject(scopes)) throw fail(at, "expected an object of scopes");
    for (const [scope, list] of Object.entries(scopes)) {
      const checked = requirements(list, `${at}["${scope}"]`, fail);
      if (transport !== "docker") continue;
      if (scope.includes("*")) throw fail(`${at}["${scope}"]`, "a wildcard scope is not implemented");
      policy.docker.set(scope, checked);
    }
  }
  return policy;
}

/**
 * The requirements for `ref`: its most specific `docker` scope (`host/repo:tag` or `host/repo@digest`, then
 * `host/repo`, each namespace up to `host`), else the default.
 */
export function requirementsFor(policy: Policy, ref: Reference): Requirement[] {
  const repository = `${ref.registry}/${ref.repository}`;
  const exact = ref.digest !== undefined ? `${repository}@${ref.digest}` : `${repository}:${ref.tag ?? "latest"}`;
  const scopes = [exact];
  for (let name = repository; name.length > 0; name = name.slice(0, Math.max(0, name.lastIndexOf("/"))))
    scopes.push(name);
  for (const scope of scopes) {
    const found = policy.docker.get(scope);
    if (found !== undefined) return found;
  }
  return policy.default;
}

type Fail = (path: string, what: string) => UsageError;

function requirements(value: unknown, at: string, fail: Fail): Requirement[] {
  if (!Array.isArray(value) || value.length === 0) throw fail(at, "expected a non-empty list of requirements");
  return value.map((item, i) => requirement(item, `${at}[${i}]`, fail));
}

function requirement(value: unknown, at: string, fail: Fail): Requirement {
  if (!isObject(value) || typeof value.type !== "string") throw fail(at, "expected a requirement with a type");
  const only = (...keys: string[]) => {
    for (const key of Object.keys(value))
      if (!keys.includes(key)) throw fail(`${at}.${key}`, `not implemented for "${value.type}" (or unknown)`);
  };
  switch (value.type) {
    case "insecureAcceptAnything":
    case "reject":
      only("type");
      return { type: value.type };
    case "sigstoreSigned": {
      only("type", "keyPath", "keyPaths", "keyData", "signedIdentity");
      const given = ["keyPath", "keyPaths", "keyData"].filter((key) => value[key] !== undefined);
      if (given.length !== 1) throw fail(at, "expected exactly one of keyPath, keyPaths, keyData");
      return {
        type: "sigstoreSigned",
        keys: keys(value, at, fail),
        signedIdentity: identity(value.signedIdentity, at, fail),
      };
    }
    default:
      throw fail(
        `${at}.type`,
        `"${String(value.type).slice(0, 40)}" is not implemented (only insecureAcceptAnything, reject, sigstoreSigned)`,
      );
  }
}

function keys(value: Record<string, unknown>, at: string, fail: Fail): Array<{ path?: string; data?: string }> {
  if (typeof value.keyPath === "string") return [{ path: value.keyPath }];
  if (typeof value.keyData === "string") return [{ data: value.keyData }];
  if (Array.isArray(value.keyPaths) && value.keyPaths.length > 0 && value.keyPaths.every((p) => typeof p === "string"))
    return value.keyPaths.map((path: string) => ({ path }));
  throw fail(at, "keyPath and keyData are strings, keyPaths a non-empty list of strings");
}

function identity(value: unknown, at: string, fail: Fail): SignedIdentity {
  if (value === undefined) return { type: "matchRepoDigestOrExact" };
  const here = `${at}.signedIdentity`;
  if (!isObject(value) || typeof value.type !== "string") throw fail(here, "expected an object with a type");
  const only = (...keys: string[]) => {
    for (const key of Object.keys(value)) if (!keys.includes(key)) throw fail(`${here}.${key}`, "unknown key");
  };
  switch (value.type) {
    case "matchRepoDigestOrExact":
    case "matchRepository":
      only("type");
      return { type: value.type };
    case "exactRepository":
      only("type", "dockerRepository");
      if (typeof value.dockerRepository !== "string") throw fail(here, "expected dockerRepository");
      return { type: "exactRepository", dockerRepository: value.dockerRepository };
    case "exactReference":
      only("type", "dockerReference");
      if (typeof value.dockerReference !== "string") throw fail(here, "expected dockerReference");
      return { type: "exactReference", dockerReference: value.dockerReference };
    default:
      throw fail(`${here}.type`, `"${String(value.type).slice(0, 40)}" is not implemented`);
  }
}
