/**
 * Which hosts serve a registry, in order: its own mirrors, then the mirrors
 * for every registry, then the registry itself (the origin), the way
 * containerd's `hosts.toml` and Docker's `registry-mirrors` do it. Each host
 * says how to reach it (plain HTTP or TLS, a private CA), its credentials,
 * and what it may serve (`pull`: content by digest; `resolve`: tags).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import type { Credentials } from "./auth.ts";
import { UsageError } from "./errors.ts";

/** What a host may serve. */
export type Capability = "pull" | "resolve";

/** One host as configured. */
export interface HostSettings {
  /** Plain HTTP instead of TLS. @default true for loopback hosts, else false */
  insecure?: boolean;
  /** A PEM file of the CA that signs the host's certificate. */
  ca?: string;
  username?: string;
  password?: string;
}

/** A mirror as configured: a host, its settings and capabilities. */
export interface MirrorSettings extends HostSettings {
  host: string;
  /** @default ["pull", "resolve"] */
  capabilities?: Capability[];
  /**
   * The API path that replaces `/v2` on this mirror, for a proxy served under
   * a path (Harbor's proxy-cache project: `/v2/<project>`; containerd's
   * `override_path`). @default "/v2"
   */
  path?: string;
}

/** One registry's settings: the origin's own and its mirrors. */
export interface RegistrySettings extends HostSettings {
  mirrors?: MirrorSettings[];
}

/** Mirrors and per-registry settings. */
export interface HostsConfig {
  /** Mirror hosts for every registry, tried in order after a registry's own. */
  mirrors?: string[];
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
  const mirrors: MirrorSettings[] = [...(own.mirrors ?? []), ...(config.mirrors ?? []).map((host) => ({ host }))];
  const seen = new Set<string>([registry]);
  const endpoints: Endpoint[] = [];
  for (const mirror of mirrors) {
    if (seen.has(mirror.host)) continue;
    seen.add(mirror.host);
    endpoints.push(endpoint(mirror.host, { ...(config.registries?.[mirror.host] ?? {}), ...mirror }, config, true, mirror.capabilities ?? ["pull", "resolve"], mirror.path));
  }
  endpoints.push(endpoint(registry, own, config, false, ["pull", "resolve"]));
  return endpoints;
}

/** Loopback hosts are spoken to over plain HTTP unless configured otherwise. */
export function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, "");
  return name === "localhost" || name === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

function endpoint(host: string, settings: HostSettings, config: HostsConfig, mirror: boolean, capabilities: Capability[], path = "/v2"): Endpoint {
  const apiHost = host === "docker.io" ? "registry-1.docker.io" : host;
  const insecure = settings.insecure ?? (isLoopback(host) || (config.insecureRegistries ?? []).includes(host));
  const caFiles = [settings.ca, config.caFile].filter((f): f is string => f !== undefined);
  return {
    host,
    apiUrl: `${insecure ? "http" : "https"}://${apiHost}${path.replace(/\/+$/, "")}`,
    mirror,
    capabilities: new Set(capabilities),
    ...(!insecure && caFiles.length > 0 && { ca: trustedCertificates(caFiles) }),
    ...(settings.username !== undefined && settings.password !== undefined && { credentials: { username: settings.username, password: settings.password } }),
  };
}

/** The configured CA files, with the usual public roots (a CA given to Bun's fetch replaces them). */
function trustedCertificates(files: string[]): string[] {
  const own = files.map((file) => {
    try {
      return readFileSync(file, "utf8");
    } catch (cause) {
      throw new UsageError(`Cannot read the CA file "${file}": ${(cause as NodeJS.ErrnoException).code === "ENOENT" ? "it does not exist" : (cause as Error).message}`, { cause });
    }
  });
  return [...own, ...(require("node:tls") as typeof import("node:tls")).rootCertificates];
}
