/**
 * The demo: start a real registry on 127.0.0.1, push a unikraft-style image
 * (4 MiB kernel and 32 MiB initrd in a tar layer, one ROM, x86_64 and arm64),
 * pull it twice with ocicache (a miss, then a hit, each timed), print the
 * digest-pinned kernel's path, check the bytes, and stop the registry.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pushSampleImage } from "../tests/helpers/images.ts";
import { startRegistry } from "../tests/helpers/registry.ts";

const CLI = join(import.meta.dir, "..", "lib", "cli", "main.ts");
const work = mkdtempSync(join(tmpdir(), "ocicache-demo-"));
const registry = await startRegistry();
try {
  console.log(`demo: docker-registry on ${registry.host}`);
  const image = await pushSampleImage(registry.url, "unikraft/nginx", "1.25", {
    format: "spec",
    kernelBytes: 4 * 1024 * 1024,
    initrdBytes: 32 * 1024 * 1024,
    romBytes: [256 * 1024],
  });
  console.log(`demo: pushed ${image.ref} (kernel 4 MiB and initrd 32 MiB in one tar layer, a ROM; x86_64 and arm64)`);
  const env = { ...process.env, OCICACHE_DIR: join(work, "cache") };
  const ocicache = (args: string[]) => {
    const started = performance.now();
    const result = Bun.spawnSync(["bun", CLI, ...args], { env, stderr: "inherit" });
    if (result.exitCode !== 0) throw new Error(`ocicache ${args.join(" ")} exited with ${result.exitCode}`);
    return { stdout: result.stdout.toString(), ms: performance.now() - started };
  };

  const miss = ocicache(["pull", image.ref, "-o", join(work, "first")]);
  process.stdout.write(miss.stdout);
  console.log(`demo: first pull (miss: every blob from the registry): ${miss.ms.toFixed(0)} ms`);
  const hit = ocicache(["pull", image.ref, "-o", join(work, "second"), "--json"]);
  const result = JSON.parse(hit.stdout);
  console.log(`demo: second pull (hit: ${result.hit}; one HEAD re-checks the tag): ${hit.ms.toFixed(0)} ms`);

  const pinned = `${image.name}@${result.digest}`;
  const path = ocicache(["path", pinned, "--role", "kernel"]);
  console.log(`demo: ocicache path ${pinned} --role kernel`);
  console.log(`      ${path.stdout.trim()} (${path.ms.toFixed(0)} ms, no network)`);

  for (const name of ["kernel", "initrd", "rom0"]) {
    if (!readFileSync(join(work, "first", name)).equals(readFileSync(join(work, "second", name))))
      throw new Error(`${name} differs`);
  }
  if (!readFileSync(path.stdout.trim()).equals(readFileSync(join(work, "second", "kernel"))))
    throw new Error("path differs");
  console.log("demo: both pulls and the path gave the same bytes");
} finally {
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
