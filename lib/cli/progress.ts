/**
 * Progress of the downloads of one command, in one of three forms:
 *
 * - `terminal`: one line that never wraps, naming the image and the files in
 *   flight (`nginx:1.25 kernel, initrd`, the host shortened first), with the
 *   bytes, the speed, the time left, and `writing` once the bytes are in;
 *   redrawn at most ten times a second and cleared before anything else is
 *   printed.
 * - `log` (a CI log): a line when each download starts (naming the image and
 *   its files, and where a resumed one starts), one at 25, 50 and 75 % and at
 *   least every 10 s in between (bytes, speed, time left, as docker and
 *   buildkit print in plain mode), one when it ends with the bytes fetched
 *   now, and a summary.
 * - `json` (`--progress=json`, for tools): one JSON object a line per event,
 *   in the vocabulary of `--json` (docs/cli.md, "Progress as JSON").
 *
 * @module
 */

import type { BlobProgress } from "../pull/cache.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { ellipsis, escapeControl, fitReference, plural } from "./text.ts";

/** Milliseconds between redraws. */
const REDRAW_MS = 100;
/** In a log, the most time between two lines of one download. */
const LOG_EVERY_MS = 10_000;
/** In JSON, the least time between two progress events of one download. */
const JSON_EVERY_MS = 1_000;

/** How progress is shown. */
export type ProgressMode = "terminal" | "log" | "json";

/** Where progress goes (stderr), in which form, and the terminal's width. */
export interface ProgressSink {
  write(text: string): void;
  mode: ProgressMode;
  columns(): number;
}

/** One download as progress knows it: what it is for, and where it started and last said so. */
interface Blob extends BlobProgress {
  startedAt: number;
  /** The bytes it had when it started (a resumed download's). */
  from: number;
  /** When it last printed a line (log, json), and the last quarter a log line said. */
  saidAt: number;
  quarter: number;
}

/**
 * Collects blob progress and shows it through a sink.
 *
 * @example
 * ```ts
 * import { Progress } from "./progress.ts";
 * const lines: string[] = [];
 * const progress = new Progress("example", { write: (t) => lines.push(t), mode: "log", columns: () => 80 });
 * progress.update({ digest: `sha256:${"a".repeat(64)}`, received: 0, total: 10, files: ["kernel"] });
 * progress.update({ digest: `sha256:${"a".repeat(64)}`, received: 10, total: 10 });
 * console.log(lines); // fetching example kernel (sha256:aaaaaaaaaaaa, 10 B), then fetched example kernel (…)
 * ```
 */
export class Progress {
  readonly #label: string;
  readonly #sink: ProgressSink;
  readonly #now: () => number;
  #blobs = new Map<string, Blob>();
  #startedAt: number | undefined;
  #lastDraw = 0;
  #drawn = false;

  constructor(label: string, sink: ProgressSink, now: () => number = Date.now) {
    this.#label = label;
    this.#sink = sink;
    this.#now = now;
  }

  /** Record progress of one blob (what it is for is kept as first said); draw, log or emit when due. */
  update(progress: BlobProgress): void {
    const now = this.#now();
    this.#startedAt ??= now;
    const before = this.#blobs.get(progress.digest);
    const blob: Blob = {
      ...before,
      ...progress,
      ...((before?.image ?? progress.image) !== undefined && { image: before?.image ?? progress.image }),
      files: before?.files ?? progress.files ?? [],
      resumed: progress.resumed === true,
      startedAt: before?.startedAt ?? now,
      from: progress.resumed ? progress.received : (before?.from ?? 0),
      saidAt: before?.saidAt ?? now,
      quarter: before?.quarter ?? 0,
    };
    this.#blobs.set(progress.digest, blob);
    if (this.#sink.mode !== "terminal") {
      if (this.#sink.mode === "log") this.#log(before, blob, now);
      else this.#json(before, blob, now);
      return;
    }
    if (now - this.#lastDraw < REDRAW_MS && progress.received < progress.total) return;
    this.#lastDraw = now;
    this.#sink.write(`\r\x1b[2K${this.line(now)}`);
    this.#drawn = true;
  }

  /** The terminal line: the image and files in flight, bar, bytes, speed and time left (or `writing`), cut to fit. */
  line(now: number): string {
    let received = 0;
    let total = 0;
    for (const blob of this.#blobs.values()) {
      received += blob.received;
      total += blob.total;
    }
    const seconds = Math.max(0.001, (now - (this.#startedAt ?? now)) / 1000);
    const speed = received / seconds;
    const tail =
      received >= total
        ? "writing"
        : `${formatBytes(speed)}/s, ${speed > 0 ? formatDuration(((total - received) / speed) * 1000) : "?"} left`;
    const counts = `${formatBytes(received)} / ${formatBytes(total)} ${tail}`;
    const width = this.#sink.columns() - 1;
    // The bar gives way to the label (up to 48 characters): what is fetched matters more than a second gauge.
    const wish = Math.min(48, this.#inFlight(Infinity).length);
    const barWidth = Math.max(0, Math.min(24, width - counts.length - 4 - wish));
    const filled = Math.round((total === 0 ? 1 : received / total) * barWidth);
    const bar = barWidth > 0 ? ` [${"#".repeat(filled)}${" ".repeat(barWidth - filled)}] ` : " ";
    const room = width - counts.length - bar.length;
    return `${room <= 1 ? "" : this.#inFlight(room)}${bar}${counts}`.slice(0, Math.max(0, width));
  }

  /** `nginx:1.25 kernel, initrd`: the image of the downloads in flight (or the label) and their files, in `room`. */
  #inFlight(room: number): string {
    const flying = [...this.#blobs.values()].filter((b) => b.received < b.total);
    const shown = flying.length > 0 ? flying : [...this.#blobs.values()];
    const images = new Set(shown.map((b) => b.image ?? this.#label));
    const image = escapeControl(images.size === 1 ? [...images][0]! : this.#label);
    const files = [...new Set(shown.flatMap((b) => b.files ?? []))].join(", ");
    // The repository's last part and the tag stay whole before the files are cut.
    const least = Math.min(image.length, `…/${image.split("/").at(-1)}`.length);
    if (files === "" || room < least + 5) return fitReference(image, room);
    if (room < least + 1 + files.length) return `${fitReference(image, least)} ${ellipsis(files, room - least - 1)}`;
    return `${fitReference(image, room - files.length - 1)} ${files}`;
  }

  #log(before: Blob | undefined, blob: Blob, now: number): void {
    const what = describe(blob, this.#label);
    if (before !== undefined && blob.resumed) {
      this.#say(`resuming ${what.subject} at ${formatBytes(blob.from)}`);
      return;
    }
    if (before === undefined) {
      const resumed = blob.from > 0 ? `, resumed at ${formatBytes(blob.from)}` : "";
      this.#say(`fetching ${what.subject} (${what.digest}${formatBytes(blob.total)}${resumed})`);
      if (blob.received < blob.total) return;
    }
    if (blob.received >= blob.total) {
      if (before !== undefined && before.received >= before.total) return;
      const took = now - blob.startedAt;
      const bytes = blob.total - blob.from;
      const speed = took > 0 ? `, ${formatBytes((bytes / took) * 1000)}/s` : "";
      const resumed = blob.from > 0 ? `, resumed at ${formatBytes(blob.from)}` : "";
      this.#say(`fetched ${what.subject} (${formatBytes(bytes)} in ${formatDuration(took)}${speed}${resumed})`);
      return;
    }
    const quarter = Math.floor((blob.received / blob.total) * 4);
    if (quarter <= blob.quarter && now - blob.saidAt < LOG_EVERY_MS) return;
    const took = Math.max(1, now - blob.startedAt);
    const speed = ((blob.received - blob.from) / took) * 1000;
    const left = speed > 0 ? formatDuration(((blob.total - blob.received) / speed) * 1000) : "?";
    const percent = Math.floor((blob.received / blob.total) * 100);
    this.#say(
      `fetching ${what.subject}: ${formatBytes(blob.received)} / ${formatBytes(blob.total)} (${percent}%), ` +
        `${formatBytes(speed)}/s, ${left} left`,
    );
    this.#blobs.set(blob.digest, { ...blob, saidAt: now, quarter: Math.max(quarter, blob.quarter) });
  }

  #json(before: Blob | undefined, blob: Blob, now: number): void {
    const about = {
      ...(blob.image !== undefined && { reference: blob.image }),
      digest: blob.digest,
      files: blob.files,
      bytes: blob.total,
    };
    if (before === undefined || blob.resumed) {
      this.#emit({ event: before === undefined ? "fetching" : "resuming", ...about, receivedBytes: blob.received });
      if (blob.received < blob.total) return;
    }
    if (blob.received >= blob.total) {
      if (before !== undefined && before.received >= before.total) return;
      const tookSeconds = (now - blob.startedAt) / 1000;
      this.#emit({ event: "fetched", ...about, fetchedBytes: blob.total - blob.from, tookSeconds });
      return;
    }
    if (now - blob.saidAt < JSON_EVERY_MS) return;
    this.#emit({ event: "progress", ...about, receivedBytes: blob.received });
    this.#blobs.set(blob.digest, { ...blob, saidAt: now });
  }

  /** Another process is downloading a blob this one needs: one line saying so, and whose the download is. */
  wait(digest: string, pid: number | undefined): void {
    this.done();
    const blob = this.#blobs.get(digest);
    if (this.#sink.mode === "json") {
      const reference = blob?.image;
      this.#emit({ event: "waiting", ...(reference !== undefined && { reference }), digest, ...(pid && { pid }) });
      return;
    }
    const who = pid === undefined ? "another ocicache" : `another ocicache (pid ${pid})`;
    const what = blob === undefined ? `${this.#label} ${digest.slice(0, 19)}` : describe(blob, this.#label).subject;
    this.#say(`waiting for ${who} downloading ${what}`);
  }

  /** A warning from the cache: in JSON an event of its own; elsewhere the caller prints it, after `done`. */
  warn(message: string): boolean {
    if (this.#sink.mode !== "json") return false;
    this.#emit({ event: "warning", message });
    return true;
  }

  /** After success: in a log or JSON, one summary of what was fetched; on a terminal, the line cleared. */
  finish(label: string): void {
    this.done();
    if (this.#sink.mode === "terminal" || this.#blobs.size === 0) return;
    let bytes = 0;
    for (const blob of this.#blobs.values()) bytes += blob.received - blob.from;
    const took = this.#now() - this.#startedAt!;
    if (this.#sink.mode === "json") {
      this.#emit({ event: "done", blobCount: this.#blobs.size, fetchedBytes: bytes, tookSeconds: took / 1000 });
      return;
    }
    const count = plural(this.#blobs.size, "blob");
    this.#say(`${label}: fetched ${count} (${formatBytes(bytes)}) in ${formatDuration(took)}`);
  }

  /** Clear the terminal line (before an error, a warning, the result, or on an interrupt). */
  done(): void {
    if (this.#drawn) this.#sink.write("\r\x1b[2K");
    this.#drawn = false;
  }

  #say(line: string): void {
    this.#sink.write(`ocicache: ${escapeControl(line)}\n`);
  }

  #emit(event: Record<string, unknown>): void {
    this.#sink.write(`${JSON.stringify(event)}\n`);
  }
}

/** What a log line calls a download: `REF kernel, initrd` with its short digest apart, or `REF sha256:…`. */
function describe(blob: Blob, label: string): { subject: string; digest: string } {
  const short = blob.digest.slice(0, 19);
  const files = blob.files ?? [];
  const image = blob.image ?? label;
  if (files.length === 0) return { subject: `${image} ${short}`, digest: "" };
  return { subject: `${image} ${files.join(", ")}`, digest: `${short}, ` };
}
