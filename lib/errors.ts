/**
 * Typed errors, each with a stable `code` and the exit code the CLI returns
 * for it. Errors become outcomes in two places only: `main()` and the admin
 * app's error handler.
 *
 * @module
 */

/** The exit codes of the CLI, documented in the README. */
export const EXIT_CODES = {
  ok: 0,
  other: 1,
  usage: 2,
  notFound: 3,
  integrity: 4,
  registry: 5,
  auth: 6,
} as const;

/** A stable, machine-readable error code. */
export type ErrorCode = "EUSAGE" | "ENOTFOUND" | "EINTEGRITY" | "EREGISTRY" | "EAUTH" | "ESTORE";

/**
 * The base of every error ocicache throws on purpose.
 *
 * @example
 * ```ts
 * import { OcicacheError } from "./errors.ts";
 * const error = new OcicacheError("ESTORE", 1, "Cannot open cache: read-only");
 * console.log(error.code, error.exitCode);
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

/** Bad input from the user: a flag, a reference, a digest. Exit code 2. */
export class UsageError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("EUSAGE", EXIT_CODES.usage, message, options);
  }
}

/** A reference, tag, platform or blob that does not exist. Exit code 3. */
export class NotFoundError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("ENOTFOUND", EXIT_CODES.notFound, message, options);
  }
}

/** Content that is not what it claims to be. Exit code 4. */
export class IntegrityError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("EINTEGRITY", EXIT_CODES.integrity, message, options);
  }
}

/** Bytes whose SHA-256 is not the expected digest. Exit code 4. */
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

/** Content whose length is not the expected size. Exit code 4. */
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

/** A registry that cannot be reached or answers with an error. Exit code 5. */
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

/** Credentials refused or missing for a registry that requires them. Exit code 6. */
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

/** The cache directory cannot be used. Exit code 1. */
export class StoreError extends OcicacheError {
  constructor(message: string, options?: ErrorOptions) {
    super("ESTORE", EXIT_CODES.other, message, options);
  }
}

/** Whether an error is a Node-style system error with the given code. */
export function isErrno(error: unknown, ...codes: string[]): error is NodeJS.ErrnoException {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? "");
}
