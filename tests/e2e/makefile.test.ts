/**
 * The makefile recipe of docs/cli.md, run by GNU make against a real
 * registry: a cache hit must not look like a change to make.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestHex, digestOf } from "../../lib/oci/digest.ts";
import { CLI } from "../helpers/cli.ts";
import { HOST_ARCH as host, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, startRegistry } from "../helpers/registry.ts";

const [recipe, recipeForm] = [
  ...readFileSync(join(import.meta.dir, "../../docs/cli.md"), "utf8").matchAll(/```make\n([\s\S]*?)```/g),
].map((m) => m[1]!);

let registry: RegistryHandle;
let image: SampleImage;
beforeAll(async () => {
  registry = await startRegistry();
  image = await pushSampleImage(registry.url, "make/app", "1", { format: "spec" });
});
afterAll(() => registry.stop());

const temp = useTempDir("make");

async function make(...args: string[]): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn(["make", "-C", temp.path, ...args, `OCICACHE=bun ${CLI}`, `IMAGE=${image.ref}`], {
    env: { ...process.env, OCICACHE_DIR: join(temp.path, "cache") },
    stdout: "ignore",
    stderr: "pipe",
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  return { code, stderr };
}

describe("the makefile recipes", () => {
  test("a failing path stops make with the recipe's error", async () => {
    writeFileSync(join(temp.path, "Makefile"), recipe.replace("--role kernel", "--role nosuchrole"));
    const run = await make();
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("ocicache could not provide the kernel");
  });

  test("pulling in a recipe: the second make runs the pull and rebuilds nothing", async () => {
    writeFileSync(join(temp.path, "Makefile"), recipeForm!);
    expect((await make()).code).toBe(0);
    const app = join(temp.path, "app.img");
    expect(readFileSync(app)).toEqual(Buffer.from(image.manifests[host].files.kernel));
    const built = statSync(app);
    expect((await make()).code).toBe(0);
    expect([statSync(app).ino, statSync(app).mtimeMs]).toEqual([built.ino, built.mtimeMs]);
  });

  test("builds once; the second make has nothing to do, online and with the registry stopped", async () => {
    writeFileSync(join(temp.path, "Makefile"), recipe);
    expect((await make()).code).toBe(0);
    const kernel = image.manifests[host].files.kernel;
    expect(readFileSync(join(temp.path, "app.img"))).toEqual(Buffer.from(kernel));
    const blob = join(temp.path, "cache", "blobs", "sha256", digestHex(digestOf(kernel)));
    const written = statSync(blob).mtimeMs;

    expect((await make("-q")).code).toBe(0);
    expect(statSync(blob).mtimeMs).toBe(written);

    await registry.stop();
    const offline = await make("-q");
    expect(offline.code).toBe(0);
    expect(offline.stderr).toContain("warning");
    expect(statSync(blob).mtimeMs).toBe(written);
  });
});
