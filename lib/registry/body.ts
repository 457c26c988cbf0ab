/**
 * Reading a registry's response bodies within bounds: an idle timeout for
 * every read, a deadline for small bodies, a low-speed limit for blobs, and a
 * size limit for what is read into memory.
 *
 * @module
 */

import { IntegrityError, RegistryError } from "../errors.ts";
import { SMALL_BODY_DEADLINE_MS } from "../oci/limits.ts";
import { formatBytes, formatDuration } from "../units.ts";

/** How long a body may take: every read of a registry's body goes through these. */
export interface BodyLimits {
  /** Nothing received for this long fails the read. */
  idleTimeoutMs: number;
  /** The whole body must have arrived within this long (small bodies: manifests, tokens, errors). */
  deadlineMs?: number;
  /** Fewer than `bytesPerSecond` on average over `windowMs` fails the read (curl's `--speed-limit`, `--speed-time`). */
  lowSpeed?: { bytesPerSecond: number; windowMs: number };
}

/**
 * The chunks of a response body, read within `limits`; a stall, a trickle,
 * a missed deadline or a dropped connection is a `RegistryError`, and the
 * body is cancelled.
 *
 * @throws {RegistryError} of kind `timeout` (stalled, too slow, too late) or `unreachable` (dropped).
 * @example
 * ```ts
 * import { readBody } from "./body.ts";
 * let bytes = 0;
 * for await (const chunk of readBody(new Response("hello"), { idleTimeoutMs: 1000 }, "example")) {
 *   bytes += chunk.byteLength;
 * }
 * console.log(bytes); // 5
 * ```
 */
export async function* readBody(response: Response, limits: BodyLimits, what: string): AsyncGenerator<Uint8Array> {
  if (response.body === null) return;
  const reader = response.body.getReader();
  const started = Date.now();
  let received = 0;
  let windowStart = started;
  let windowBytes = 0;
  const fail = (reason: string, kind: "timeout" | "unreachable", cause?: unknown) =>
    new RegistryError(`Cannot read ${what}: ${reason} after ${received} bytes`, { kind, cause });
  let finished = false;
  try {
    for (;;) {
      const waitMs =
        limits.deadlineMs === undefined
          ? limits.idleTimeoutMs
          : Math.min(limits.idleTimeoutMs, Math.max(0, started + limits.deadlineMs - Date.now()));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), waitMs);
      });
      let next: Awaited<ReturnType<typeof reader.read>> | "timeout";
      try {
        next = await Promise.race([reader.read(), timeout]);
      } catch (error) {
        throw fail("the connection dropped", "unreachable", error);
      } finally {
        clearTimeout(timer);
      }
      if (next === "timeout") {
        const late = limits.deadlineMs !== undefined && Date.now() - started >= limits.deadlineMs;
        throw fail(
          late
            ? `not complete within ${formatDuration(limits.deadlineMs!)}`
            : `nothing received for ${formatDuration(limits.idleTimeoutMs)}`,
          "timeout",
        );
      }
      if (next.done) {
        finished = true;
        return;
      }
      received += next.value.byteLength;
      windowBytes += next.value.byteLength;
      const low = limits.lowSpeed;
      if (low !== undefined && Date.now() - windowStart >= low.windowMs) {
        if (windowBytes * 1000 < low.bytesPerSecond * (Date.now() - windowStart)) {
          throw fail(`slower than ${formatBytes(low.bytesPerSecond)}/s for ${formatDuration(low.windowMs)}`, "timeout");
        }
        windowStart = Date.now();
        windowBytes = 0;
      }
      yield next.value;
    }
  } finally {
    // Failed, or the consumer stopped early: let go of the connection.
    if (!finished) await reader.cancel().catch(() => {});
  }
}

/**
 * Read a whole small body within `limits`, refusing one longer than `limit`
 * bytes before reading it all.
 *
 * @throws {IntegrityError} when the body is larger than `limit`.
 * @throws {RegistryError} when it stalls, is late or drops.
 */
export async function readBounded(
  response: Response,
  limit: number,
  what: string,
  limits: BodyLimits,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await response.body?.cancel();
    throw new IntegrityError(`Cannot accept ${what}: ${declared} bytes is larger than the limit of ${limit}`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of readBody(response, { deadlineMs: SMALL_BODY_DEADLINE_MS, ...limits }, what)) {
    total += chunk.byteLength;
    if (total > limit) throw new IntegrityError(`Cannot accept ${what}: larger than the limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
