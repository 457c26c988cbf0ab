/**
 * A one-line progress bar for a terminal: the bytes of every blob in flight,
 * redrawn at most ten times a second.
 *
 * @module
 */

import type { BlobProgress } from "../pull/cache.ts";
import { formatBytes } from "../config/units.ts";

/** Milliseconds between redraws. */
const REDRAW_MS = 100;
const BAR_WIDTH = 24;

/**
 * Collects blob progress and draws it through `write` (a TTY's stderr).
 *
 * @example
 * ```ts
 * import { ProgressBar } from "./progress.ts";
 * const bar = new ProgressBar("example", (text) => process.stderr.write(text));
 * bar.done();
 * ```
 */
export class ProgressBar {
  readonly #label: string;
  readonly #write: (text: string) => void;
  #blobs = new Map<string, BlobProgress>();
  #lastDraw = 0;
  #drawn = false;

  constructor(label: string, write: (text: string) => void) {
    this.#label = label;
    this.#write = write;
  }

  /** Record progress of one blob and redraw when due. */
  update(progress: BlobProgress): void {
    this.#blobs.set(progress.digest, progress);
    const now = Date.now();
    if (now - this.#lastDraw < REDRAW_MS && progress.received < progress.total) return;
    this.#lastDraw = now;
    let received = 0;
    let total = 0;
    for (const blob of this.#blobs.values()) {
      received += blob.received;
      total += blob.total;
    }
    const ratio = total === 0 ? 1 : received / total;
    const filled = Math.round(ratio * BAR_WIDTH);
    this.#write(
      `\r\x1b[2K${this.#label} [${"#".repeat(filled)}${" ".repeat(BAR_WIDTH - filled)}] ${formatBytes(received)} / ` +
        `${formatBytes(total)}`,
    );
    this.#drawn = true;
  }

  /** Clear the line. */
  done(): void {
    if (this.#drawn) this.#write("\r\x1b[2K");
    this.#drawn = false;
  }
}
