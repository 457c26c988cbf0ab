/**
 * Progress of the downloads of one command. On a terminal: one line that
 * never wraps, with the bytes of every blob in flight, the speed, the time
 * left, and `writing` once the bytes are in; redrawn at most ten times a
 * second and cleared before anything else is printed. Elsewhere (a CI log):
 * a line when each download starts (naming the image, and where a resumed
 * one starts), one at 25, 50 and 75 % and at least every 10 s in between
 * (bytes, speed, time left, as docker and buildkit print in plain mode), one
 * when it ends with the bytes fetched now, and a summary.
 *
 * @module
 */

import type { BlobProgress } from "../pull/cache.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { ellipsis } from "./text.ts";

/** Milliseconds between redraws. */
const REDRAW_MS = 100;
/** In a log, the most time between two lines of one download. */
const LOG_EVERY_MS = 10_000;
/** Where progress goes: stderr, whether it is a terminal, and its width. */
export interface ProgressSink {
  write(text: string): void;
  terminal: boolean;
  columns(): number;
}

/**
 * Collects blob progress and shows it through a sink.
 *
 * @example
 * ```ts
 * import { Progress } from "./progress.ts";
 * const lines: string[] = [];
 * const progress = new Progress("example", { write: (t) => lines.push(t), terminal: false, columns: () => 80 });
 * progress.update({ digest: `sha256:${"a".repeat(64)}`, received: 0, total: 10 });
 * progress.update({ digest: `sha256:${"a".repeat(64)}`, received: 10, total: 10 });
 * console.log(lines.length); // 2
 * ```
 */
export class Progress {
  readonly #label: string;
  readonly #sink: ProgressSink;
  readonly #now: () => number;
  #blobs = new Map<string, BlobProgress & { startedAt: number }>();
  /** In a log: where each download started (a resumed one past 0), and when and at what quarter it last said so. */
  #logged = new Map<string, { from: number; at: number; quarter: number }>();
  #startedAt: number | undefined;
  #lastDraw = 0;
  #drawn = false;

  constructor(label: string, sink: ProgressSink, now: () => number = Date.now) {
    this.#label = label;
    this.#sink = sink;
    this.#now = now;
  }

  /** Record progress of one blob; draw the bar when due, or log a start or an end. */
  update(progress: BlobProgress): void {
    const now = this.#now();
    this.#startedAt ??= now;
    const before = this.#blobs.get(progress.digest);
    this.#blobs.set(progress.digest, { ...progress, startedAt: before?.startedAt ?? now });
    if (!this.#sink.terminal) return this.#log(before, progress, now);
    if (now - this.#lastDraw < REDRAW_MS && progress.received < progress.total) return;
    this.#lastDraw = now;
    this.#sink.write(`\r\x1b[2K${this.line(now)}`);
    this.#drawn = true;
  }

  /** The terminal line: label, bar, bytes, speed and time left (or the phase), cut to the width. */
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
    const barWidth = Math.max(0, Math.min(24, width - counts.length - 16));
    const filled = Math.round((total === 0 ? 1 : received / total) * barWidth);
    const bar = barWidth > 0 ? ` [${"#".repeat(filled)}${" ".repeat(barWidth - filled)}] ` : " ";
    const room = width - counts.length - bar.length;
    const label = room <= 1 ? "" : ellipsis(this.#label, room);
    return `${label}${bar}${counts}`.slice(0, Math.max(0, width));
  }

  #log(before: BlobProgress | undefined, progress: BlobProgress, now: number): void {
    const short = progress.digest.slice(0, 19);
    const what = `${short} of ${this.#label}`;
    if (before === undefined) {
      const resumed = progress.received > 0 ? `, resumed at ${formatBytes(progress.received)}` : "";
      this.#sink.write(`ocicache: fetching ${what} (${formatBytes(progress.total)}${resumed})\n`);
      this.#logged.set(progress.digest, { from: progress.received, at: now, quarter: 0 });
      if (progress.received < progress.total) return;
    }
    const logged = this.#logged.get(progress.digest)!;
    if (progress.received >= progress.total) {
      if (before !== undefined && before.received >= before.total) return;
      const took = now - this.#blobs.get(progress.digest)!.startedAt;
      const bytes = progress.total - logged.from;
      const speed = took > 0 ? `, ${formatBytes((bytes / took) * 1000)}/s` : "";
      const resumed = logged.from > 0 ? `, resumed at ${formatBytes(logged.from)}` : "";
      this.#sink.write(
        `ocicache: fetched ${short} (${formatBytes(bytes)} in ${formatDuration(took)}${speed}${resumed})\n`,
      );
      return;
    }
    const quarter = Math.floor((progress.received / progress.total) * 4);
    if (quarter <= logged.quarter && now - logged.at < LOG_EVERY_MS) return;
    const took = Math.max(1, now - this.#blobs.get(progress.digest)!.startedAt);
    const speed = ((progress.received - logged.from) / took) * 1000;
    const left = speed > 0 ? formatDuration(((progress.total - progress.received) / speed) * 1000) : "?";
    const percent = Math.floor((progress.received / progress.total) * 100);
    this.#sink.write(
      `ocicache: fetching ${what}: ${formatBytes(progress.received)} / ${formatBytes(progress.total)} ` +
        `(${percent}%), ${formatBytes(speed)}/s, ${left} left\n`,
    );
    this.#logged.set(progress.digest, { ...logged, at: now, quarter: Math.max(quarter, logged.quarter) });
  }

  /** Another process is downloading a blob this one needs: one line saying so, and whose the download is. */
  wait(digest: string, pid: number | undefined): void {
    this.done();
    const who = pid === undefined ? "another ocicache" : `another ocicache (pid ${pid})`;
    this.#sink.write(`ocicache: waiting for ${who} downloading ${digest.slice(0, 19)} of ${this.#label}\n`);
  }

  /** After success: in a log, one summary line of what was fetched; on a terminal, the line cleared. */
  finish(label: string): void {
    this.done();
    if (this.#sink.terminal || this.#blobs.size === 0) return;
    let bytes = 0;
    for (const blob of this.#blobs.values()) bytes += blob.received;
    const took = this.#now() - this.#startedAt!;
    const count = this.#blobs.size === 1 ? "1 blob" : `${this.#blobs.size} blobs`;
    this.#sink.write(`ocicache: ${label}: fetched ${count} (${formatBytes(bytes)}) in ${formatDuration(took)}\n`);
  }

  /** Clear the terminal line (before an error, a warning, the result, or on an interrupt). */
  done(): void {
    if (this.#drawn) this.#sink.write("\r\x1b[2K");
    this.#drawn = false;
  }
}
