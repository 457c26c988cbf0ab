import { describe, expect, test } from "bun:test";
import { Progress, type ProgressMode } from "../../../lib/cli/progress.ts";
import type { Digest } from "../../../lib/oci/digest.ts";
import { vocabularyProblems } from "../../../lib/vocabulary.ts";

const A = `sha256:${"a".repeat(64)}` as Digest;
const B = `sha256:${"b".repeat(64)}` as Digest;
const MiB = 1024 * 1024;

const REF = "127.0.0.1:36254/unikraft/nginx:1.25";

function progress(terminal: boolean | ProgressMode, columns = 80, label = REF) {
  const written: string[] = [];
  let now = 1_000;
  const mode = terminal === true ? "terminal" : terminal === false ? "log" : terminal;
  const bar = new Progress(label, { write: (text) => written.push(text), mode, columns: () => columns }, () => now);
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
      if (columns === 200) expect(line).toStartWith(`${REF} [#####`);
      if (columns === 80) expect(line).toStartWith(`${REF} [#`);
      if (columns === 50) expect(line).toStartWith("…/nginx:1.… 2.0 MiB");
    }
  });

  test("names the image and the files in flight; narrower, the bar goes, then the host, then the repository", () => {
    const line = (columns: number) => {
      const { bar, tick } = progress(true, columns);
      bar.update({ digest: A, received: 0, total: 8 * MiB, image: REF, files: ["initrd"] });
      bar.update({ digest: B, received: 0, total: 1, image: REF, files: ["kernel"] });
      tick(1000);
      bar.update({ digest: B, received: 1, total: 1 });
      bar.update({ digest: A, received: MiB, total: 8 * MiB });
      const drawn = bar.line(2000);
      expect(drawn.length).toBeLessThan(columns);
      return drawn;
    };
    expect(line(100)).toMatch(/^127\.0\.0\.1:36254\/unikraft\/nginx:1\.25 initrd \[#+ *\] 1\.0 MiB \/ 8\.0 MiB/);
    expect(line(80)).toStartWith(`${REF} initrd 1.0 MiB / 8.0 MiB`);
    expect(line(70)).toStartWith("127.…/unikraft/nginx:1.25 initrd 1.0 MiB");
    expect(line(64)).toStartWith("…/nginx:1.25 initrd 1.0 MiB");
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
  test("a line naming the image and its files when each blob starts and ends, one each quarter, and a summary", () => {
    const { bar, written, tick } = progress(false, 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: 4 * MiB, image: REF, files: ["kernel", "initrd"] });
    tick(100);
    bar.update({ digest: A, received: MiB / 2, total: 4 * MiB });
    tick(100);
    bar.update({ digest: A, received: MiB, total: 4 * MiB });
    tick(800);
    bar.update({ digest: A, received: 4 * MiB, total: 4 * MiB });
    bar.finish("nginx:1.25");
    expect(written).toEqual([
      `ocicache: fetching ${REF} kernel, initrd (sha256:aaaaaaaaaaaa, 4.0 MiB)\n`,
      `ocicache: fetching ${REF} kernel, initrd: 1.0 MiB / 4.0 MiB (25%), 5.0 MiB/s, 600ms left\n`,
      `ocicache: fetched ${REF} kernel, initrd (4.0 MiB in 1s, 4.0 MiB/s)\n`,
      "ocicache: nginx:1.25: fetched 1 blob (4.0 MiB) in 1s\n",
    ]);
  });

  test("a blob no file names (a manifest, a config) is named by its digest", () => {
    const { bar, written } = progress(false, 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: 10 });
    expect(written).toEqual(["ocicache: fetching nginx:1.25 sha256:aaaaaaaaaaaa (10 B)\n"]);
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
    bar.update({ digest: A, received: 0, total: 4 * MiB, image: REF, files: ["initrd"] });
    bar.update({ digest: A, received: 3 * MiB, total: 4 * MiB, resumed: true });
    tick(1000);
    bar.update({ digest: A, received: 4 * MiB, total: 4 * MiB });
    bar.finish("nginx:1.25");
    expect(written).toEqual([
      `ocicache: fetching ${REF} initrd (sha256:aaaaaaaaaaaa, 4.0 MiB)\n`,
      `ocicache: resuming ${REF} initrd at 3.0 MiB\n`,
      `ocicache: fetched ${REF} initrd (1.0 MiB in 1s, 1.0 MiB/s, resumed at 3.0 MiB)\n`,
      "ocicache: nginx:1.25: fetched 1 blob (1.0 MiB) in 1s\n",
    ]);
  });
});

describe("Progress as JSON", () => {
  test("one object a line per event, in the vocabulary of --json, progress at most once a second", () => {
    const { bar, written, tick } = progress("json", 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: 4 * MiB, image: REF, files: ["initrd"] });
    tick(500);
    bar.update({ digest: A, received: MiB, total: 4 * MiB });
    tick(600);
    bar.update({ digest: A, received: 2 * MiB, total: 4 * MiB, resumed: true });
    tick(1100);
    bar.update({ digest: A, received: 3 * MiB, total: 4 * MiB });
    bar.wait(B, 7);
    expect(bar.warn("careful")).toBe(true);
    tick(100);
    bar.update({ digest: A, received: 4 * MiB, total: 4 * MiB });
    bar.finish("nginx:1.25");
    const events = written.map((line) => JSON.parse(line));
    expect(written.every((line) => line.endsWith("}\n") && !line.slice(0, -1).includes("\n"))).toBe(true);
    const about = { reference: REF, digest: A, files: ["initrd"], bytes: 4 * MiB };
    expect(events).toEqual([
      { event: "fetching", ...about, receivedBytes: 0 },
      { event: "resuming", ...about, receivedBytes: 2 * MiB },
      { event: "progress", ...about, receivedBytes: 3 * MiB },
      { event: "waiting", digest: B, pid: 7 },
      { event: "warning", message: "careful" },
      { event: "fetched", ...about, fetchedBytes: 2 * MiB, tookSeconds: 2.3 },
      { event: "done", blobCount: 1, fetchedBytes: 2 * MiB, tookSeconds: 2.3 },
    ]);
    expect(vocabularyProblems(events)).toEqual([]);
  });
});

describe("Progress while another process downloads", () => {
  test("one line naming the other process, the image and the file, the terminal's line cleared first", () => {
    const { bar, written } = progress(true, 80, "nginx:1.25");
    bar.update({ digest: A, received: 0, total: MiB, image: REF, files: ["kernel"] });
    bar.wait(A, 4242);
    bar.wait(B, 4242);
    expect(written.slice(-3)).toEqual([
      "\r\x1b[2K",
      `ocicache: waiting for another ocicache (pid 4242) downloading ${REF} kernel\n`,
      "ocicache: waiting for another ocicache (pid 4242) downloading nginx:1.25 sha256:bbbbbbbbbbbb\n",
    ]);
  });
});
