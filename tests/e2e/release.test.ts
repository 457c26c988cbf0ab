import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOST_ARCH as host } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const ROOT = join(import.meta.dir, "..", "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

let registry: RegistryHandle;
let image: SampleImage;
let dir: string;

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `release-${Math.random().toString(36).slice(2, 8)}/app`, "1", {
    format: "spec",
    romBytes: [1000],
  });
  dir = mkdtempSync(join(tmpdir(), "ocicache-release-"));
});
afterAll(async () => {
  await registry.stop();
  rmSync(dir, { recursive: true, force: true });
});

function run(argv: string[], env: Record<string, string> = {}) {
  const result = Bun.spawnSync(argv, {
    env: { ...process.env, OCICACHE_DIR: join(dir, "cache"), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe("the compiled binary (bun run build)", () => {
  const bin = join(ROOT, "dist", "ocicache");
  beforeAll(() => {
    expect(run(["bun", join(ROOT, "scripts", "build.ts")]).code).toBe(0);
  });

  test("pulls, hits, prints a path and cleans up on the real registry", () => {
    expect(run([bin, "--version"]).stdout.trim()).toBe(pkg.version);
    const first = run([bin, "pull", image.ref, "-o", join(dir, "one"), "--json"]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout).hit).toBe(false);
    expect(readFileSync(join(dir, "one", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    const second = run([bin, "pull", image.ref, "-o", join(dir, "two"), "--json"]);
    expect(JSON.parse(second.stdout).hit).toBe(true);
    const path = run([bin, "path", `${image.name}@${image.indexDigest}`, "--role", "initrd", "--offline"]);
    expect(path.code).toBe(0);
    expect(readFileSync(path.stdout.trim())).toEqual(Buffer.from(image.manifests[host].files.initrd));
    const gc = run([bin, "gc", "--max-size", "0", "--grace", "0", "--json"]);
    expect(gc.code).toBe(0);
    expect(JSON.parse(gc.stdout).removed.length).toBeGreaterThan(0);
    expect(readdirSync(join(dir, "cache", "blobs", "sha256"))).toEqual([]);
  }, 120_000);

  test("run inside someone's checkout, it reads no .env and runs no bunfig.toml preload there", () => {
    const checkout = join(dir, "checkout");
    mkdirSync(checkout);
    writeFileSync(join(checkout, ".env"), `OCICACHE_DIR=${join(checkout, "planted-cache")}\n`);
    writeFileSync(join(checkout, "bunfig.toml"), 'preload = ["./evil.js"]\n');
    writeFileSync(
      join(checkout, "evil.js"),
      `require("node:fs").writeFileSync(${JSON.stringify(join(checkout, "ran"))}, "");`,
    );
    const { OCICACHE_DIR: _, ...env } = process.env;
    const doctor = Bun.spawnSync([bin, "doctor", "--json"], {
      cwd: checkout,
      env: { ...env, XDG_CACHE_HOME: join(dir, "xdg") },
      stdout: "pipe",
    });
    expect(doctor.stdout.toString()).toContain(join(dir, "xdg", "ocicache"));
    expect(existsSync(join(checkout, "ran"))).toBe(false);
    expect(existsSync(join(checkout, "planted-cache"))).toBe(false);
  });
});

describe("bunx from a packed tarball", () => {
  test("npm pack, then bunx runs the CLI from it", () => {
    const packDir = join(dir, "pack");
    mkdirSync(packDir);
    expect(
      Bun.spawnSync(["npm", "pack", "--pack-destination", packDir], { cwd: ROOT, stdout: "ignore", stderr: "ignore" })
        .exitCode,
    ).toBe(0);
    const tarball = join(packDir, `ocicache-${pkg.version}.tgz`);
    expect(existsSync(tarball)).toBe(true);
    const isolated = { BUN_INSTALL_CACHE_DIR: join(dir, "bun-cache") };
    const version = run(["bunx", "--package", tarball, "ocicache", "--version"], isolated);
    expect(version.stdout.trim()).toBe(pkg.version);
    const pulled = run(
      ["bunx", "--package", tarball, "ocicache", "pull", image.ref, "-o", join(dir, "bunx")],
      isolated,
    );
    expect(pulled.code).toBe(0);
    expect(readFileSync(join(dir, "bunx", "initrd"))).toEqual(Buffer.from(image.manifests[host].files.initrd));
  }, 120_000);

  test("bun add of the tarball into an empty project: its bin runs, and the library imports", () => {
    const packDir = join(dir, "pack-add");
    mkdirSync(packDir);
    const packed = Bun.spawnSync(["npm", "pack", "--pack-destination", packDir], { cwd: ROOT, stdout: "ignore" });
    expect(packed.exitCode).toBe(0);
    const tarball = join(packDir, `ocicache-${pkg.version}.tgz`);
    const project = join(dir, "project");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true }));
    const isolated = { BUN_INSTALL_CACHE_DIR: join(dir, "bun-cache-add") };
    const added = Bun.spawnSync(["bun", "add", tarball], { cwd: project, env: { ...process.env, ...isolated } });
    expect(added.exitCode).toBe(0);
    const installed = join(project, "node_modules", "ocicache");
    expect(existsSync(join(installed, "LICENSE"))).toBe(true);
    expect(existsSync(join(installed, "docs", "cli.md"))).toBe(true);
    expect(existsSync(join(installed, "tests"))).toBe(false);
    const bin = run([join(project, "node_modules", ".bin", "ocicache"), "path", image.ref, "--role", "kernel"]);
    expect(bin.code).toBe(0);
    expect(readFileSync(bin.stdout.trim())).toEqual(Buffer.from(image.manifests[host].files.kernel));
    const script = [
      'import { formatReference, parseReference } from "ocicache";',
      'console.log(formatReference(parseReference("alpine")));',
    ];
    writeFileSync(join(project, "use.ts"), script.join("\n"));
    const used = Bun.spawnSync(["bun", "use.ts"], { cwd: project, stdout: "pipe" });
    expect(used.stdout.toString().trim()).toBe("docker.io/library/alpine:latest");
  }, 120_000);
});
