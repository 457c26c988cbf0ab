/**
 * Client credentials for the mirror: an htpasswd file of bcrypt entries
 * (`htpasswd -B`), checked with `Bun.password.verify`. A verified pair is
 * remembered (by its SHA-256) so that a client's many requests cost one
 * bcrypt check, not one each.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { MAX_USER_FILE_BYTES } from "../oci/limits.ts";
import { describeReadError, readFileBounded } from "../oci/read.ts";

/** Users and their bcrypt hashes. */
export type Htpasswd = Map<string, string>;

/**
 * Read an htpasswd file; only bcrypt entries (`$2y$`, `$2a$`, `$2b$`) are accepted.
 *
 * @throws {UsageError} when the file cannot be read, or a line is not `user:bcrypt-hash`.
 * @example
 * ```ts
 * import { readHtpasswd } from "./htpasswd.ts";
 * const users = (() => { try { return readHtpasswd("/etc/ocicache/htpasswd"); } catch { return new Map(); } })();
 * ```
 */
export function readHtpasswd(path: string): Htpasswd {
  let text: string;
  try {
    text = readFileBounded(path, MAX_USER_FILE_BYTES, { follow: true }).toString("utf8");
  } catch (cause) {
    throw new UsageError(`Cannot read the htpasswd file "${path}": ${describeReadError(cause)}`, { cause });
  }
  const users: Htpasswd = new Map();
  for (const [index, line] of text.split("\n").entries()) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    const hash = line.slice(colon + 1).trim();
    if (colon <= 0 || !/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
      throw new UsageError(
        `Cannot use the htpasswd file "${path}": line ${index + 1} is not "user:bcrypt hash" (make entries with ` +
          `htpasswd -B)`,
      );
    }
    users.set(line.slice(0, colon), hash);
  }
  if (users.size === 0) throw new UsageError(`Cannot use the htpasswd file "${path}": it has no entries`);
  return users;
}

/**
 * A checker of `Authorization: Basic …` headers against `users`. A user name that is not in the file costs the
 * same bcrypt verification as one that is (against a hash of the file's own cost), so that the time of an answer
 * does not tell which names exist.
 *
 * @example
 * ```ts
 * import { basicChecker } from "./htpasswd.ts";
 * const check = basicChecker(new Map());
 * console.log(await check(undefined)); // false
 * ```
 */
export function basicChecker(users: Htpasswd): (header: string | undefined) => Promise<boolean> {
  const verified = new Set<string>();
  const cost = Number(/^\$2[aby]\$(\d\d)\$/.exec(users.values().next().value ?? "")?.[1] ?? 10);
  const decoy = Bun.password.hashSync(crypto.randomUUID(), { algorithm: "bcrypt", cost });
  return async (header) => {
    if (header === undefined || !/^Basic /i.test(header)) return false;
    let decoded: string;
    try {
      decoded = atob(header.slice(6).trim());
    } catch {
      return false;
    }
    const colon = decoded.indexOf(":");
    const user = decoded.slice(0, colon);
    const hash = colon > 0 ? users.get(user) : undefined;
    if (hash === undefined) {
      await Bun.password.verify(decoded.slice(colon + 1), decoy);
      return false;
    }
    const key = new Bun.CryptoHasher("sha256").update(`${hash}\0${decoded}`).digest("hex");
    if (verified.has(key)) return true;
    if (!(await Bun.password.verify(decoded.slice(colon + 1), hash))) return false;
    if (verified.size >= MAX_REMEMBERED) verified.clear();
    verified.add(key);
    return true;
  };
}

/** Verified credentials remembered at most. */
const MAX_REMEMBERED = 1024;
