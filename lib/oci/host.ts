/**
 * Registry hosts: the `host[:port]` grammar, Docker Hub's names folded into
 * one, loopback hosts, and the settings a host can be given (its mirrors, TLS,
 * CA and credentials). The config reads these settings; the registry client
 * acts on them.
 *
 * @module
 */

/** The registry a reference without a host names. */
export const DOCKER_HUB = "docker.io";

/** One label of a DNS name (or a part of an IPv4 address): letters, digits, inner hyphens. */
const LABEL = "(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])";

/** `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address: the grammar of a reference's host. */
export const HOST_RE = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]{1,5})?$`);

/**
 * One name for Docker Hub, whichever of its names is given.
 *
 * @example
 * ```ts
 * import { canonicalRegistry } from "./host.ts";
 * console.log(canonicalRegistry("registry-1.docker.io")); // docker.io
 * ```
 */
export function canonicalRegistry(host: string): string {
  const lower = host.toLowerCase();
  return lower === "index.docker.io" || lower === "registry-1.docker.io" ? DOCKER_HUB : host;
}

/** The host that serves a registry's API: Docker Hub's is `registry-1.docker.io`. */
export function apiHost(host: string): string {
  return host === DOCKER_HUB ? "registry-1.docker.io" : host;
}

/** Loopback hosts are spoken to over plain HTTP unless configured otherwise. */
export function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, "");
  return name === "localhost" || name === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

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
