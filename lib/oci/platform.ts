/**
 * Choose a manifest from an image index: by OCI platform (`os/arch[/variant]`,
 * with unikraft's `x86_64` and OCI's `amd64` as one architecture) and by
 * unikraft's `org.unikraft.kernel.plat` annotation.
 *
 * @module
 */

import { IntegrityError, NotFoundError, UsageError } from "../errors.ts";
import type { Descriptor } from "./manifest.ts";
import { ARCH_ANNOTATION, PLAT_ANNOTATION } from "./names.ts";

/** What the caller asks for; an absent field matches anything. */
export interface PlatformWant {
  os?: string;
  architecture?: string;
  variant?: string;
  /** The unikraft platform (`qemu`, `fc`, `xen`, …). */
  plat?: string;
}

/**
 * Parse `--platform os/arch[/variant]` (or a bare `arch`) and `--plat`.
 *
 * @throws {UsageError} naming the bad part.
 * @example Choose a platform
 * ```ts
 * import assert from "node:assert";
 * import { parsePlatform } from "ocicache";
 * assert.deepEqual(parsePlatform("linux/arm64"), { os: "linux", architecture: "arm64" });
 * assert.deepEqual(parsePlatform("x86_64", "qemu"), { architecture: "amd64", plat: "qemu" });
 * ```
 */
export function parsePlatform(platform?: string, plat?: string): PlatformWant {
  const want: PlatformWant = {};
  if (platform !== undefined) {
    const parts = platform.split("/");
    if (parts.length > 3 || parts.some((p) => !PART_RE.test(p))) {
      throw new UsageError(
        `Cannot parse platform "${platform.slice(0, 60)}": expected os/arch[/variant], e.g. linux/arm64`,
      );
    }
    if (parts.length === 1) want.architecture = normaliseArchitecture(parts[0]!);
    else {
      want.os = parts[0]!.toLowerCase();
      want.architecture = normaliseArchitecture(parts[1]!);
      if (parts[2] !== undefined) want.variant = parts[2].toLowerCase();
    }
  }
  if (plat !== undefined) {
    if (!PART_RE.test(plat))
      throw new UsageError(`Cannot parse plat "${plat.slice(0, 60)}": expected a name such as qemu, fc or xen`);
    want.plat = plat.toLowerCase();
  }
  return want;
}

/** The architecture of this machine, in OCI's names. */
export function hostArchitecture(): string {
  return normaliseArchitecture(process.arch === "x64" ? "amd64" : process.arch);
}

/** One name per architecture: `x86_64` and `x86-64` are `amd64`, `aarch64` is `arm64`. */
export function normaliseArchitecture(arch: string): string {
  const lower = arch.toLowerCase();
  return ARCH_ALIASES[lower] ?? lower;
}

/**
 * Pick the first manifest of an index that matches; without an architecture
 * in `want`, the host's is used.
 *
 * @throws {NotFoundError} listing what the index offers when nothing matches.
 */
export function selectManifest(manifests: Descriptor[], want: PlatformWant, name: string): Descriptor {
  const wanted = { ...want, architecture: want.architecture ?? hostArchitecture() };
  const found = manifests.find((m) => matches(describe(m), wanted));
  if (found !== undefined) return found;
  const offers = manifests.map((m) => formatPlatform(describe(m))).join(", ") || "nothing";
  throw new NotFoundError(
    `Cannot find ${describeWant(want)} in "${name}": it offers ${offers} (use --platform or --plat)`,
  );
}

/**
 * What was asked for, the way the user wrote it: `platform "linux/arm64"`, `plat "fc"` (for this machine's
 * architecture when none was given).
 */
function describeWant(want: PlatformWant): string {
  const platform = [want.os, want.architecture, want.variant].filter((p) => p !== undefined).join("/");
  const plat = want.plat === undefined ? "" : `plat "${want.plat}"`;
  if (platform === "") return `${plat || "a platform"} for ${hostArchitecture()}`;
  return plat === "" ? `platform "${platform}"` : `platform "${platform}" with ${plat}`;
}

/** The platform of a descriptor, filled in from unikraft's annotations. */
export function describe(descriptor: Descriptor): PlatformWant {
  const platform = descriptor.platform;
  const annotations = descriptor.annotations ?? {};
  const arch = platform?.architecture ?? annotations[ARCH_ANNOTATION];
  const plat = annotations[PLAT_ANNOTATION] ?? platform?.os;
  return {
    ...(platform?.os !== undefined && { os: platform.os.toLowerCase() }),
    ...(arch !== undefined && { architecture: normaliseArchitecture(arch) }),
    ...(platform?.variant !== undefined && { variant: platform.variant.toLowerCase() }),
    ...(plat !== undefined && { plat: plat.toLowerCase() }),
  };
}

/**
 * The name of a platform's own directory (`pull --all-platforms -o DIR`): `linux-amd64`, `linux-arm64-v8`, with
 * unikraft's plat where it is not the OS (`linux-amd64-qemu`). The parts come from the registry: a name that is
 * not a plain file name (`..`, a `/`) is refused, never used as a path.
 *
 * @throws {IntegrityError} when the platform's parts do not make a plain file name.
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { platformDirName } from "./platform.ts";
 * assert.equal(platformDirName({ os: "linux", architecture: "amd64", plat: "qemu" }), "linux-amd64-qemu");
 * assert.throws(() => platformDirName({ os: "linux", architecture: "amd64", variant: "v8/../.." }));
 * ```
 */
export function platformDirName(p: PlatformWant): string {
  const parts = [p.os ?? "any", p.architecture ?? "any", p.variant, p.plat !== p.os ? p.plat : undefined];
  const name = parts.filter((part) => part !== undefined).join("-");
  if (!DIR_NAME_RE.test(name))
    throw new IntegrityError(`Cannot name a directory for platform "${name.slice(0, 80)}": not a plain file name`);
  return name;
}

const DIR_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** `linux/arm64 (qemu)`, with `any` for the parts a descriptor leaves out. */
export function formatPlatform(p: PlatformWant): string {
  const base = [p.os ?? "any", p.architecture ?? "any", ...(p.variant !== undefined ? [p.variant] : [])].join("/");
  return p.plat !== undefined && p.plat !== p.os ? `${base} (${p.plat})` : base;
}

function matches(have: PlatformWant, want: PlatformWant): boolean {
  return (
    (want.architecture === undefined || have.architecture === want.architecture) &&
    (want.os === undefined || have.os === want.os) &&
    (want.variant === undefined || have.variant === undefined || have.variant === want.variant) &&
    (want.plat === undefined || have.plat === want.plat)
  );
}

const PART_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ARCH_ALIASES: Record<string, string> = { x86_64: "amd64", "x86-64": "amd64", aarch64: "arm64", armv8: "arm64" };
