import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { RUN_ID, useTempDir } from "../helpers/env.ts";
import { pushSampleImage } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const CHROMIUM = Bun.which("chromium");
const tmp = useTempDir("status");
let registry: RegistryHandle;
beforeAll(async () => {
  registry = await sharedRegistry();
  await pushSampleImage(registry.url, `status-${RUN_ID}/app`, "1", { format: "spec", kernelBytes: 50_000 });
});
afterAll(() => registry.stop());

/** Run headless Chromium on a page (as root it needs --no-sandbox). */
function chromium(...args: string[]): { code: number; stdout: string } {
  const ran = Bun.spawnSync([CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: ran.exitCode, stdout: ran.stdout.toString() };
}

describe.skipIf(CHROMIUM === null)("the status page at / in a real browser", () => {
  test("shows the figures of /v1/stats and the requests, and renders (a screenshot)", async () => {
    const serve = await startServe(tmp.path, registry.host);
    try {
      const base = `http://${serve.host}`;
      expect((await fetch(`${base}/v2/status-${RUN_ID}/app/manifests/1`)).status).toBe(200);
      const stats = (await (await fetch(`${base}/v1/stats`)).json()) as { referenceCount: number; blobCount: number };
      const dom = chromium("--dump-dom", `${base}/`);
      expect(dom.code).toBe(0);
      const figure = (id: string) => new RegExp(`id="${id}">([^<]*)<`).exec(dom.stdout)?.[1];
      expect([figure("references"), figure("blobs")]).toEqual([String(stats.referenceCount), String(stats.blobCount)]);
      expect(stats.referenceCount).toBe(1);
      expect(dom.stdout).toContain(`${registry.host}/status-${RUN_ID}/app:1`);
      expect(dom.stdout).toContain(`/v2/status-${RUN_ID}/app/manifests/1`);
      expect(dom.stdout).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)[a-z]/);
      const screenshot = join(tmp.path, "status-page.png");
      expect(chromium(`--screenshot=${screenshot}`, "--window-size=1000,700", `${base}/`).code).toBe(0);
      expect(statSync(screenshot).size).toBeGreaterThan(1000);
      expect(readFileSync(screenshot).subarray(1, 4).toString()).toBe("PNG");
    } finally {
      await serve.stop();
    }
  }, 60_000);
});
