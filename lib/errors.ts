/**
 * Typed errors, each with a stable `code` and the exit code the CLI returns
 * for it. Errors become outcomes in two places only: `main()` and the admin
 * app's error handler.
 *
 * @module
 */

/** The exit codes of the CLI, documented in the README.
 * @example Exit codes by name
 * ```ts
 * import assert from "node:assert";
 * import { EXIT_CODES } from "ocicache";
 * assert.equal(EXIT_CODES.notFound, 3);
 * assert.equal(EXIT_CODES.auth, 6);
 * ```
 */
export const EXIT_CODES = {
  ok: 0,
  other: 1,
  usage: 2,
  notFound: 3,
  integrity: 4,
  registry: 5,
  auth: 6,
  policy: 7,
} as const;

/** A stable, machine-readable error code. */
export type ErrorCode = "EUSAGE" | "ENOTFOUND" | "EINTEGRITY" | "EREGISTRY" | "EAUTH" | "ESTORE" | "EPOLICY";

/**
 * The base of every error ocicache throws on purpose.
 * @example Handle any error of ocicache
 * ```ts
 * import assert from "node:assert";
 * import { OcicacheError, UsageError } from "ocicache";
 * const error: unknown = new UsageError('Unknown role "bios"');
 * assert(error instanceof OcicacheError);
 * assert.equal(error.code, "EUSAGE");
 * assert.equal(error.exitCode, 2);
 * ```
 */
export class OcicacheError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;
  /** The process exit code for this error. */
  readonly exitCode: number;

  constructor(code: ErrorCode, exitCode: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad input from the user: a flag, a reference, a digest. Exit code 2.
 * @example A bad flag or reference
 * ```ts
 * import assert from "node:assert";
 * import { parseReference, UsageError } from "ocicache";
 * assert.throws(() => parseReference("Bad/Ref"), UsageError);
 * assert.equal(new UsageError("x").exitCode, 2);
 * ```
 */
export class UsageError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("EUSAGE", EXIT_CODES.usage, message, options);
  }
}

/** A reference, tag, platform or blob that does not exist. Exit code 3.
 * @example Something that is not there
 * ```ts
 * import assert from "node:assert";
 * import { NotFoundError } from "ocicache";
 * const error = new NotFoundError('Cannot find "1.25" in "oci:./image"');
 * assert.equal(error.code, "ENOTFOUND");
 * assert.equal(error.exitCode, 3);
 * ```
 */
export class NotFoundError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("ENOTFOUND", EXIT_CODES.notFound, message, options);
  }
}

/** Content that is not what it claims to be. Exit code 4.
 * @example Content that is not what it claims
 * ```ts
 * import assert from "node:assert";
 * import { DigestMismatchError, IntegrityError } from "ocicache";
 * const error = new DigestMismatchError(`sha256:${"a".repeat(64)}`, `sha256:${"b".repeat(64)}`);
 * assert(error instanceof IntegrityError);
 * assert.equal(error.exitCode, 4);
 * ```
 */
export class IntegrityError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("EINTEGRITY", EXIT_CODES.integrity, message, options);
  }
}

/** Bytes whose SHA-256 is not the expected digest. Exit code 4.
 * @example What was expected and what came
 * ```ts
 * import assert from "node:assert";
 * import { DigestMismatchError } from "ocicache";
 * const error = new DigestMismatchError(`sha256:${"a".repeat(64)}`, `sha256:${"b".repeat(64)}`, 'blob "kernel"');
 * assert.equal(error.actual, `sha256:${"b".repeat(64)}`);
 * assert.match(error.message, /^Cannot verify blob "kernel": digest is/);
 * ```
 */
export class DigestMismatchError extends IntegrityError {
  /** The digest the content should have. */
  readonly expected: string;
  /** The digest the content has. */
  readonly actual: string;

  constructor(expected: string, actual: string, what = "content") {
    super(`Cannot verify ${what}: digest is "${actual}", expected "${expected}"`);
    this.expected = expected;
    this.actual = actual;
  }
}

/** Content whose length is not the expected size. Exit code 4.
 * @example Too few or too many bytes
 * ```ts
 * import assert from "node:assert";
 * import { SizeMismatchError } from "ocicache";
 * const error = new SizeMismatchError(10, 12, "blob");
 * assert.equal(error.message, "Cannot verify blob: received more than 12 bytes, expected 10");
 * assert.equal(error.exitCode, 4);
 * ```
 */
export class SizeMismatchError extends IntegrityError {
  /** The size in bytes the content should have. */
  readonly expected: number;
  /** The bytes received so far (more than expected when it overflowed). */
  readonly actual: number;

  constructor(expected: number, actual: number, what = "content") {
    const how = actual > expected ? "more than" : "only";
    super(`Cannot verify ${what}: received ${how} ${actual} bytes, expected ${expected}`);
    this.expected = expected;
    this.actual = actual;
  }
}

/** One entry of an OCI distribution error body (spec: "Error Codes"). */
export interface RegistryErrorDetail {
  code: string;
  message?: string;
}

/**
 * What went wrong with a registry, for code that decides by it (never by a message):
 * - `unreachable`: no connection (refused, reset, host not found);
 * - `tls`: its certificate is not trusted;
 * - `timeout`: no answer, or a body that stalled or trickled, within the limits;
 * - `status`: it answered with an HTTP error;
 * - `protocol`: it answered something the distribution spec does not allow.
 */
export type RegistryErrorKind = "unreachable" | "tls" | "timeout" | "status" | "protocol";

/** A registry that cannot be reached or answers with an error. Exit code 5.
 * @example Tell a registry's failures apart
 * ```ts
 * import assert from "node:assert";
 * import { RegistryError } from "ocicache";
 * const error = new RegistryError('Cannot fetch manifest "1.25": "registry.example" answered 503', { status: 503 });
 * assert.equal(error.kind, "status");
 * assert.equal(error.exitCode, 5);
 * ```
 */
export class RegistryError extends OcicacheError {
  /** What went wrong. */
  readonly kind: RegistryErrorKind;
  /** The HTTP status, when the registry answered at all. */
  readonly status: number | undefined;
  /** The error codes from the registry's JSON body, if it sent any. */
  readonly details: RegistryErrorDetail[];

  constructor(
    message: string,
    init: { kind?: RegistryErrorKind; status?: number; details?: RegistryErrorDetail[] } & ErrorOptions = {},
  ) {
    super("EREGISTRY", EXIT_CODES.registry, message, init);
    this.kind = init.kind ?? (init.status === undefined ? "protocol" : "status");
    this.status = init.status;
    this.details = init.details ?? [];
  }
}

/**
 * Why authentication failed:
 * - `missing`: the registry wants credentials and none are configured;
 * - `refused`: the registry or its token server refused the credentials (or anonymous access);
 * - `challenge`: a challenge ocicache will not answer (unsupported, or from a redirect target, or a token
 *   realm over plain HTTP for an HTTPS registry);
 * - `token`: the token server answered without a usable token.
 */
export type AuthErrorReason = "missing" | "refused" | "challenge" | "token";

/** Credentials refused or missing for a registry that requires them. Exit code 6.
 * @example Why authentication failed
 * ```ts
 * import assert from "node:assert";
 * import { AuthError } from "ocicache";
 * const error = new AuthError('Cannot pull from "registry.example": it requires credentials', { reason: "missing" });
 * assert.equal(error.reason, "missing");
 * assert.equal(error.exitCode, 6);
 * ```
 */
export class AuthError extends OcicacheError {
  /** Why. */
  readonly reason: AuthErrorReason;
  /** The HTTP status the registry answered with. */
  readonly status: number | undefined;

  constructor(message: string, init: { reason: AuthErrorReason; status?: number } & ErrorOptions) {
    super("EAUTH", EXIT_CODES.auth, message, init);
    this.reason = init.reason;
    this.status = init.status;
  }
}

/** An image the signature policy refuses (`--policy`): unsigned, signed by another key or for another name.
 * Exit code 7, offline too.
 * @example A refusal by the policy
 * ```ts
 * import assert from "node:assert";
 * import { PolicyError } from "ocicache";
 * const error = new PolicyError('Cannot accept "127.0.0.1:5000/a:1": it has no signature');
 * assert.equal(error.code, "EPOLICY");
 * assert.equal(error.exitCode, 7);
 * ```
 */
export class PolicyError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("EPOLICY", EXIT_CODES.policy, message, options);
  }
}

/** The cache directory cannot be used. Exit code 1.
 * @example A cache or output that cannot be used
 * ```ts
 * import assert from "node:assert";
 * import { StoreError } from "ocicache";
 * const error = new StoreError('Cannot write "out/kernel": read-only file system');
 * assert.equal(error.code, "ESTORE");
 * assert.equal(error.exitCode, 1);
 * ```
 */
export class StoreError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("ESTORE", EXIT_CODES.other, message, options);
  }
}

/** Whether an error is a Node-style system error with the given code. */
export function isErrno(error: unknown, ...codes: string[]): error is NodeJS.ErrnoException {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? "");
}
