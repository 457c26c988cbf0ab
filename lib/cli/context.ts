/**
 * What every command gets, and the settings it derives from the
 * configuration: shared by the command modules, so none imports the entry.
 *
 * @module
 */

import type { Config } from "../config/config.ts";
import { UsageError } from "../errors.ts";
import { MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import { type Policy, parsePolicy } from "../oci/policy.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import { Cache, type CacheOptions } from "../pull/cache.ts";
import type { RegistryClientOptions } from "../registry/client.ts";
import type { Flags } from "./options.ts";

/** What every command gets. */
export interface Context {
  flags: Flags;
  config: Config;
  args: string[];
  /** One line (or more) to stdout. */
  print(text: string): void;
  /** One warning line to stderr, unless `--quiet`. */
  warn(message: string): void;
}

/** The cache's settings from the configuration. */
function cacheOptions(config: Config): CacheOptions {
  return {
    dir: config.cacheDir,
    offline: config.offline,
    freshForMs: config.freshForMs,
    registry: registryOptions(config),
    idleTimeoutMs: config.idleTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
    ...(config.lowSpeedLimitBytes > 0 && {
      lowSpeed: { bytesPerSecond: config.lowSpeedLimitBytes, windowMs: config.lowSpeedTimeMs },
    }),
  };
}

/** The cache a command works with: its settings from the configuration, its warnings to stderr, then `overrides`. */
export function openCache(context: Context, overrides: Partial<CacheOptions> = {}): Cache {
  return new Cache({ ...cacheOptions(context.config), onWarning: (message) => context.warn(message), ...overrides });
}

/** The registry client's settings from the configuration. */
export function registryOptions(config: Config): RegistryClientOptions {
  return {
    insecureRegistries: config.insecureRegistries,
    connectTimeoutMs: config.connectTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    mirrors: config.mirrors,
    registries: config.registries,
    ...(config.caFile !== undefined && { caFile: config.caFile }),
  };
}

/** The cleanup limits of the configuration, as `gc`, the automatic cleanup after a pull and `serve` apply them. */
export function cleanupLimits(config: Config): { maxAgeMs: number; maxSizeBytes: number; graceMs: number } {
  return { maxAgeMs: config.maxAgeMs, maxSizeBytes: config.maxSizeBytes, graceMs: config.graceMs };
}

/** Exactly one positional argument. */
export function one(context: Context, what = "reference"): string {
  if (context.args.length !== 1)
    throw new UsageError(`Cannot run this command: expected one ${what}, got ${context.args.length}`);
  return context.args[0]!;
}

/** The signature policy, when one is set (`--policy`, `OCICACHE_POLICY`, `policy`): read and checked whole. */
export function loadPolicy(context: Context): Policy | undefined {
  const path = context.config.policyFile;
  return path === undefined ? undefined : readPolicy(path);
}

/**
 * Read and check a policy file whole.
 *
 * @throws {UsageError} naming the file and what is wrong with it.
 */
export function readPolicy(path: string): Policy {
  let text: string;
  try {
    text = readFileBounded(path, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8");
  } catch (error) {
    throw new UsageError(`Cannot read the policy "${path}": ${describeReadError(error)}`);
  }
  return parsePolicy(text, path);
}
