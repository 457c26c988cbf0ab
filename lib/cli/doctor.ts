/**
 * `ocicache doctor`: checks the cache directory (writable, file system, free
 * space, copy-on-write), the config, and each configured registry and mirror
 * (reachable, credentials accepted), and says what to fix. Given references
 * or hosts, it checks those instead of the configured ones: each registry
 * and its mirrors, and whether each reference resolves.
 *
 * @module
 */

import { statfsSync } from "node:fs";
import type { Config } from "../config/config.ts";
import { AuthError, NotFoundError, RegistryError, UsageError } from "../errors.ts";
import { formatReference, type Reference } from "../oci/reference.ts";
import { RegistryClient, type RegistryClientOptions } from "../registry/client.ts";
import { endpointsFor } from "../registry/hosts.ts";
import { canClone, describeFsError, probeWritable } from "../store/files.ts";
import { Store } from "../store/store.ts";
import { formatBytes } from "../units.ts";

/** One finding. */
export interface Check {
  subject: string;
  ok: boolean;
  detail: string;
  /** What to do, when not ok. */
  fix?: string;
}

const ACCESS = {
  open: "it asks for no credentials",
  anonymous: "it lets anyone in without credentials",
  credentials: "it accepts the configured credentials",
};

/** Free space below which the cache is reported as nearly full. */
const LOW_SPACE_BYTES = 1024 ** 3;

/** Names of common file systems by `statfs` type. */
const FILE_SYSTEMS: Record<number, string> = {
  61267: "ext4",
  1481003842: "xfs",
  2435016766: "btrfs",
  16914836: "tmpfs",
  2035054128: "overlayfs",
  801189825: "zfs",
  26985: "nfs",
  1702057286: "fuse",
  4076150800: "f2fs",
};

/**
 * Run every check. `configFile` is the file to check: the one `config` was read from, or one it could not be.
 *
 * @example
 * ```ts
 * import { loadConfig } from "../config/config.ts";
 * import { runDoctor } from "./doctor.ts";
 * const checks = await runDoctor(await loadConfig(), {});
 * console.log(checks.every((c) => c.ok));
 * ```
 */
export async function runDoctor(
  config: Config,
  registry: RegistryClientOptions,
  configFile = config.configFile,
  named: { hosts: string[]; references: Reference[] } = { hosts: [], references: [] },
): Promise<Check[]> {
  const checks = [checkCache(config), ...(await checkConfig(configFile)), ...(await checkPolicyFile(config))];
  const client = new RegistryClient({ ...registry, retries: 0 });
  const asked = named.hosts.length + named.references.length > 0;
  const hosts = new Set<string>(
    asked
      ? [...named.hosts, ...named.references.map((ref) => ref.registry)]
      : [...Object.keys(config.registries), ...(config.upstream === undefined ? [] : [config.upstream])],
  );
  for (const registryHost of [...hosts])
    for (const endpoint of endpointsFor(registryHost, registry)) hosts.add(endpoint.host);
  if (!asked) for (const mirror of config.mirrors) hosts.add(mirror.host);
  for (const host of hosts) checks.push(await checkRegistry(client, host));
  for (const ref of named.references) checks.push(await checkReference(client, ref));
  return checks;
}

/** Whether a reference resolves on its registry (through its mirrors first, as a pull asks). */
async function checkReference(client: RegistryClient, ref: Reference): Promise<Check> {
  const name = formatReference(ref);
  try {
    const head = await client.headManifest(ref, ref.digest ?? ref.tag!);
    return { subject: "image", ok: true, detail: `${name} resolves to ${head.digest}` };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const fix =
      error instanceof NotFoundError
        ? `check the repository and tag: ocicache tags ${ref.registry}/${ref.repository}`
        : "see the registry's check above";
    return { subject: "image", ok: false, detail: message, fix };
  }
}

function checkCache(config: Config): Check {
  const store = new Store(config.cacheDir);
  const unwritable = store.init();
  if (unwritable !== undefined) {
    return {
      subject: "cache",
      ok: false,
      detail: `${config.cacheDir}: ${unwritable}`,
      fix: "choose a writable directory with --cache-dir or OCICACHE_DIR (pulls still work, uncached)",
    };
  }
  const unusable = probeWritable(store.tmpDir);
  if (unusable !== undefined) {
    return {
      subject: "cache",
      ok: false,
      detail: `${config.cacheDir}: ${describeFsError(unusable)}`,
      fix: "free space or fix the permissions of the cache directory",
    };
  }
  const stats = statfsSync(config.cacheDir);
  const free = Number(stats.bavail) * Number(stats.bsize);
  const fs = FILE_SYSTEMS[Number(stats.type)] ?? `type 0x${Number(stats.type).toString(16)}`;
  const cow = canClone(store.tmpDir);
  const copies = cow ? "copy-on-write clones for -o" : "no copy-on-write: -o copies, --link hardlinks";
  const detail = `${config.cacheDir} (${fs}, ${formatBytes(free)} free, writable; ${copies})`;
  if (free < LOW_SPACE_BYTES)
    return {
      subject: "cache",
      ok: false,
      detail,
      fix: `less than ${formatBytes(LOW_SPACE_BYTES)} free: run ocicache gc, or lower maxSize`,
    };
  return { subject: "cache", ok: true, detail };
}

async function checkConfig(configFile: string | undefined): Promise<Check[]> {
  if (configFile === undefined)
    return [{ subject: "config", ok: true, detail: "no config file: defaults, flags and OCICACHE_* variables" }];
  const { configFileProblems } = await import("../config/config.ts");
  const problems = await configFileProblems(configFile);
  if (problems.length === 0) return [{ subject: "config", ok: true, detail: `${configFile} is valid` }];
  return problems.map((problem) => ({
    subject: "config",
    ok: false,
    detail: `${configFile}: ${problem}`,
    fix: "correct it (docs/configuration.md); until then ocicache refuses to run, and these checks ignore the file",
  }));
}

/** The signature policy, when one is set: read and checked whole, and each of its keys read. */
async function checkPolicyFile(config: Config): Promise<Check[]> {
  const path = config.policyFile;
  if (path === undefined) return [];
  const fix = "correct it (docs/signatures.md); until then every command that checks it stops with exit 2";
  const [{ readPolicy }, { unusableKeys }] = await Promise.all([
    import("./context.ts"),
    import("../pull/signatures.ts"),
  ]);
  let problems: string[];
  try {
    problems = unusableKeys(readPolicy(path));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    problems = [error.message];
  }
  if (problems.length === 0) return [{ subject: "policy", ok: true, detail: `${path} is valid, and its keys load` }];
  return problems.map((problem) => ({ subject: "policy", ok: false, detail: problem, fix }));
}

async function checkRegistry(client: RegistryClient, host: string): Promise<Check> {
  const started = Date.now();
  try {
    const access = await client.ping(host);
    const took = `${host} answers /v2/ (${Date.now() - started} ms)`;
    if (access === "needed")
      return {
        subject: "registry",
        ok: false,
        detail: `${took}, but demands credentials and none are configured for it: pulls will fail (exit 6)`,
        fix: `docker login ${host} (or a credential helper, or username/password for the host in the config)`,
      };
    return { subject: "registry", ok: true, detail: `${took}; ${ACCESS[access]}` };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const fix =
      error instanceof AuthError
        ? "add or correct its credentials: docker login, a credential helper, or username/password " +
          "for the host in the config"
        : error instanceof RegistryError && error.kind === "tls"
          ? 'trust its CA with --ca-file or "ca" for the host in the config'
          : "check the address and that the registry runs; mirrors that fail are skipped, the origin must answer";
    return { subject: "registry", ok: false, detail: message, fix };
  }
}
