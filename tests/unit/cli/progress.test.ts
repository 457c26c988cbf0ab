import { describe, expect, test } from "bun:test";
import { Progress } from "../../../lib/cli/progress.ts";
import type { Digest } from "../../../lib/oci/digest.ts";

const A = `sha256:${"a".repeat(64)}` as Digest;
const B = `sha256:${"b".repeat(64)}` as Digest;
const MiB = 1024 * 1024;

function progress(terminal: boolean, columns = 80, label = "127.0.0.1:5000/unikraft/nginx:1.25") {
  const written: string[] = [];
  let now = 1_000;
  const bar = new Progress(label, { write: (text) => written.push(text), terminal, columns: () => columns }, () => now);
  return { bar, written, tick: (ms: number) => (now += ms) };
}

describe("Progress on a terminal", () => {
  test("one line with the bytes, the speed and the time left, never wider than the terminal", () => {
    for (const columns of [200, 80, 50, 30]) {
      const { bar, tick } = progress(true, columns);
      bar.update({ digest: A, received: 0, total: 8 * MiB });
      bar.update({ digest: B, received: 0, total: 2 * MiB });
      tick(1000);
      bar.update({ digest: A, received: 2 * MiB, total: 8 * MiB });
      const line = bar.line(2000);
      expect(line.length).toBeLessThan(columns);
      expect(line).not.toContain("\n");
      if (columns >= 80) expect(line).toContain("2.0 MiB / 10.0 MiB 2.0 MiB/s, 4s left");
      if (columns === 200) expect(line).toStartWith("127.0.0.1:5000/unikraft/nginx:1.25 [#####");
      if (columns === 80) expect(line).toStartWith("127.0.0.1:500… [#####");
    }
  });

  test("says writing once every byte is in, and clears its line when done", () => {
    const { bar, written, tick } = progress(true);
    bar.update({ digest: A, received: 0, total: MiB });
    tick(500);
    bar.update({ digest: A, received: MiB, total: MiB });
    expect(written.at(-1)).toEndWith("1.0 MiB / 1.0 MiB writing");
    bar.done();
    expect(written.at(-1)).toBe("\r\x1b[2K");
    bar.finish("x");
    expect(written.at(-1)).toBe("\r\x1b[2K");
  });
});

describe("Progress in a log", () => {
  test("a line naming the image when each blob starts and ends, one at each quarter, and a summary; no bar", () => {
    const { bar, written, tick } = progress(false, 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: 4 * MiB });
    tick(100);
    bar.update({ digest: A, received: MiB / 2, total: 4 * MiB });
    tick(100);
    bar.update({ digest: A, received: MiB, total: 4 * MiB });
    tick(800);
    bar.update({ digest: A, received: 4 * MiB, total: 4 * MiB });
    bar.finish("nginx:1.25");
    expect(written).toEqual([
      "ocicache: fetching sha256:aaaaaaaaaaaa of nginx:1.25 (4.0 MiB)\n",
      "ocicache: fetching sha256:aaaaaaaaaaaa of nginx:1.25: 1.0 MiB / 4.0 MiB (25%), 5.0 MiB/s, 600ms left\n",
      "ocicache: fetched sha256:aaaaaaaaaaaa (4.0 MiB in 1s, 4.0 MiB/s)\n",
      "ocicache: nginx:1.25: fetched 1 blob (4.0 MiB) in 1s\n",
    ]);
  });

  test("a slow download says where it is at least every 10 s between its quarters", () => {
    const { bar, written, tick } = progress(false, 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: 100 * MiB });
    for (let s = 1; s <= 25; s++) {
      tick(1000);
      bar.update({ digest: A, received: s * 0.5 * MiB, total: 100 * MiB });
    }
    expect(written.filter((line) => line.includes("%)")).map((line) => line.split(": ").at(-1)!.split(",")[0])).toEqual(
      ["5.0 MiB / 100.0 MiB (5%)", "10.0 MiB / 100.0 MiB (10%)"],
    );
  });

  test("a resumed download says where it resumed, and counts only the bytes fetched now", () => {
    const { bar, written, tick } = progress(false, 80, "nginx:1.25");
    bar.update({ digest: A, received: 3 * MiB, total: 4 * MiB });
    tick(1000);
    bar.update({ digest: A, received: 4 * MiB, total: 4 * MiB });
    expect(written).toEqual([
      "ocicache: fetching sha256:aaaaaaaaaaaa of nginx:1.25 (4.0 MiB, resumed at 3.0 MiB)\n",
      "ocicache: fetched sha256:aaaaaaaaaaaa (1.0 MiB in 1s, 1.0 MiB/s, resumed at 3.0 MiB)\n",
    ]);
  });
});

describe("Progress while another process downloads", () => {
  test("one line naming the other process and the image, the terminal's line cleared first", () => {
    const { bar, written } = progress(true, 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: MiB });
    bar.wait(B, 4242);
    expect(written.slice(-2)).toEqual([
      "\r\x1b[2K",
      "ocicache: waiting for another ocicache (pid 4242) downloading sha256:bbbbbbbbbbbb of nginx:1.25\n",
    ]);
  });
});
