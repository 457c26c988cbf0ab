/**
 * Which hosts serve a registry, in order: its own mirrors, then the mirrors
 * for every registry, then the registry itself (the origin), the way
 * containerd's `hosts.toml` and Docker's `registry-mirrors` do it. Each host
 * says how to reach it (plain HTTP or TLS, a private CA), its credentials,
 * and what it may serve (`pull`: content by digest; `resolve`: tags).
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import {
  apiHost,
  type Capability,
  type HostSettings,
  isLoopback,
  type MirrorSettings,
  type RegistrySettings,
} from "../oci/host.ts";
import { MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";
import type { Credentials } from "./credentials.ts";

export type { Capability, MirrorSettings, RegistrySettings };

/** Mirrors and per-registry settings. */
export interface HostsConfig {
  /** Mirrors for every registry (a host, or a host with settings), tried in order after a registry's own. */
  mirrors?: Array<string | MirrorSettings>;
  /** Settings by registry host (`docker.io`, `registry.example:5000`). */
  registries?: Record<string, RegistrySettings>;
  /** Hosts spoken to over plain HTTP. */
  insecureRegistries?: string[];
  /** A PEM file of a CA to trust for every TLS host (besides the usual ones). */
  caFile?: string;
}

/** A host to send requests to. */
export interface Endpoint {
  /** `host[:port]`. */
  host: string;
  /** `https://host/v2` or `http://host/v2` (or the mirror's own API path). */
  apiUrl: string;
  /** Whether it is a mirror (a failure there falls back to the next host). */
  mirror: boolean;
  capabilities: Set<Capability>;
  /** The CA certificates to trust, when not the default ones. */
  ca?: string[];
  /** Credentials from the config for this host. */
  credentials?: Credentials;
}

/**
 * The hosts that may serve `registry`, mirrors first, the origin last.
 *
 * @throws {UsageError} when a configured CA file cannot be read.
 * @example
 * ```ts
 * import { endpointsFor } from "./hosts.ts";
 * console.log(endpointsFor("127.0.0.1:5000", { mirrors: ["127.0.0.1:6000"] }).map((e) => e.apiUrl));
 * ```
 */
export function endpointsFor(registry: string, config: HostsConfig = {}): Endpoint[] {
  const own = config.registries?.[registry] ?? {};
  const shared = (config.mirrors ?? []).map((mirror) => (typeof mirror === "string" ? { host: mirror } : mirror));
  const mirrors: MirrorSettings[] = [...(own.mirrors ?? []), ...shared];
  const seen = new Set<string>([registry]);
  const endpoints: Endpoint[] = [];
  for (const mirror of mirrors) {
    if (seen.has(mirror.host)) continue;
    seen.add(mirror.host);
    endpoints.push(
      endpoint(
        mirror.host,
        { ...(config.registries?.[mirror.host] ?? {}), ...mirror },
        config,
        true,
        mirror.capabilities ?? ["pull", "resolve"],
        mirror.path,
      ),
    );
  }
  endpoints.push(endpoint(registry, own, config, false, ["pull", "resolve"]));
  return endpoints;
}

function endpoint(
  host: string,
  settings: HostSettings,
  config: HostsConfig,
  mirror: boolean,
  capabilities: Capability[],
  path = "/v2",
): Endpoint {
  const insecure = settings.insecure ?? (isLoopback(host) || (config.insecureRegistries ?? []).includes(host));
  const caFiles = [settings.ca, config.caFile].filter((f): f is string => f !== undefined);
  return {
    host,
    apiUrl: `${insecure ? "http" : "https"}://${apiHost(host)}${path.replace(/\/+$/, "")}`,
    mirror,
    capabilities: new Set(capabilities),
    ...(!insecure && caFiles.length > 0 && { ca: trustedCertificates(caFiles) }),
    ...(settings.username !== undefined &&
      settings.password !== undefined && { credentials: { username: settings.username, password: settings.password } }),
  };
}

/** The configured CA files, with the usual public roots (a CA given to Bun's fetch replaces them). */
function trustedCertificates(files: string[]): string[] {
  const own = files.map((file) => {
    try {
      return readFileBounded(file, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8");
    } catch (cause) {
      throw new UsageError(`Cannot read the CA file "${file}": ${describeReadError(cause)}`, { cause });
    }
  });
  return [...own, ...(require("node:tls") as typeof import("node:tls")).rootCertificates];
}
