/**
 * A bound on work at once: at most `limit` tasks run, the others wait in
 * order. The mirror runs its upstream downloads through one.
 *
 * @module
 */

/**
 * Run tasks at most `limit` at once, the rest in the order they came.
 *
 * @example Two slots for three tasks
 * ```ts
 * import assert from "node:assert";
 * import { Slots } from "./slots.ts";
 * const slots = new Slots(2);
 * const tasks = [1, 2, 3].map((n) => slots.run(async () => n * 10));
 * assert.equal(slots.queued, 1);
 * assert.deepEqual(await Promise.all(tasks), [10, 20, 30]);
 * ```
 */
export class Slots {
  readonly limit: number;
  #active = 0;
  #waiting: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new TypeError("Slots needs a limit of at least 1");
    this.limit = limit;
  }

  /** Tasks running now. */
  get active(): number {
    return this.#active;
  }

  /** Tasks waiting for a slot. */
  get queued(): number {
    return this.#waiting.length;
  }

  /** Run `task` when a slot is free; the slot is freed when it settles. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next === undefined) this.#active--;
      else next();
    }
  }
}
