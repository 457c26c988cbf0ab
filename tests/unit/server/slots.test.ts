import { describe, expect, test } from "bun:test";
import { Slots } from "../../../lib/server/slots.ts";

describe("Slots", () => {
  test("runs at most `limit` tasks at once, the rest in order, and frees a slot when a task fails", async () => {
    const slots = new Slots(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const task = (n: number) =>
      slots.run(async () => {
        running++;
        most = Math.max(most, running);
        await Bun.sleep(10);
        running--;
        order.push(n);
        if (n === 2) throw new Error("task 2 fails");
        return n;
      });
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map(task));
    expect(most).toBe(2);
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
    expect([slots.active, slots.queued]).toEqual([0, 0]);
  });
});
