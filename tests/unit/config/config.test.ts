import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULTS, flagSettings, loadConfig } from "../../../lib/config/config.ts";
import { UsageError } from "../../../lib/errors.ts";

let home: string;
let file: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), "ocicache-config-"));
  mkdirSync(join(home, ".config", "ocicache"), { recursive: true });
  file = join(home, ".config", "ocicache", "config.json");
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

const env = (extra: Record<string, string> = {}) => ({ HOME: home, ...extra });

async function usageError(run: () => Promise<unknown>): Promise<UsageError> {
  const error = await run().then(
    () => undefined,
    (e) => e,
  );
  expect(error).toBeInstanceOf(UsageError);
  expect(error.exitCode).toBe(2);
  return error;
}

describe("loadConfig()", () => {
  test("without flags, env or file: the defaults, and the cache under ~/.cache", async () => {
    const config = await loadConfig({ env: env() });
    expect(config).toEqual({ ...DEFAULTS, cacheDir: join(home, ".cache", "ocicache") });
    expect(config.maxAgeMs).toBe(30 * 86_400_000);
    expect(config.maxSizeBytes).toBe(10 * 2 ** 30);
    expect(config.graceMs).toBe(600_000);
    expect(config.autoCleanIntervalMs).toBe(86_400_000);
  });

  test("flags win over env, env over the file, the file over the defaults", async () => {
    writeFileSync(
      file,
      JSON.stringify({ maxAge: "3d", maxSize: "1GiB", grace: "5m", cacheDir: "/from/file", concurrency: 2 }),
    );
    const config = await loadConfig({
      env: env({ OCICACHE_MAX_AGE: "2d", OCICACHE_MAX_SIZE: "500MB", OCICACHE_DIR: "/from/env" }),
      flags: { maxAge: "1d" },
    });
    expect(config.maxAgeMs).toBe(86_400_000);
    expect(config.maxSizeBytes).toBe(500_000_000);
    expect(config.graceMs).toBe(300_000);
    expect(config.cacheDir).toBe("/from/env");
    expect(config.concurrency).toBe(2);
    expect(config.freshForMs).toBe(0);
  });

  test("XDG_CONFIG_HOME and XDG_CACHE_HOME move the file and the cache", async () => {
    const xdg = join(home, "xdg");
    mkdirSync(join(xdg, "ocicache"), { recursive: true });
    writeFileSync(join(xdg, "ocicache", "config.json"), JSON.stringify({ autoCleanInterval: "0" }));
    const config = await loadConfig({ env: env({ XDG_CONFIG_HOME: xdg, XDG_CACHE_HOME: join(home, "cache") }) });
    expect(config.autoCleanIntervalMs).toBe(0);
    expect(config.cacheDir).toBe(join(home, "cache", "ocicache"));
  });

  test("env lists and booleans", async () => {
    const config = await loadConfig({
      env: env({ OCICACHE_INSECURE_REGISTRIES: "a.local:5000, b.local", OCICACHE_OFFLINE: "yes" }),
    });
    expect(config.insecureRegistries).toEqual(["a.local:5000", "b.local"]);
    expect(config.offline).toBe(true);
  });

  test.each([
    [{ flags: { maxAge: "forever" } }, '--max-age "forever"'],
    [{ flags: { maxSize: "lots" } }, '--max-size "lots"'],
    [{ flags: { concurrency: "0" } }, "--concurrency"],
    [{ env: { OCICACHE_GRACE: "10 minutes" } }, 'OCICACHE_GRACE "10 minutes"'],
    [{ env: { OCICACHE_OFFLINE: "maybe" } }, "OCICACHE_OFFLINE"],
    [{ env: { OCICACHE_FRESH_FOR: "-1h" } }, "OCICACHE_FRESH_FOR"],
    [{ env: { OCICACHE_AUTO_CLEAN_INTERVAL: "daily" } }, "OCICACHE_AUTO_CLEAN_INTERVAL"],
  ] as Array<[{ flags?: Record<string, string>; env?: Record<string, string> }, string]>)(
    "a bad value names its key: %j",
    async (sources, part) => {
      const error = await usageError(() => loadConfig({ ...sources, env: env(sources.env ?? {}) }));
      expect(error.message).toContain(part);
    },
  );

  test.each([
    [{ maxAge: "30 days" }, '"maxAge" in'],
    [{ maxSize: -5 }, "maxSize: "],
    [{ offline: "yes" }, "offline: "],
    [{ concurrency: 1000 }, "concurrency: "],
    [{ maxAgee: "3d" }, 'maxAgee: unknown key (did you mean "maxAge"?)'],
    [{ insecureRegistries: "a.local" }, "insecureRegistries: "],
    [
      { registries: { "a.example": { mirrors: [{ host: "b.example", capabilites: ["pull"] }] } } },
      'registries["a.example"].mirrors[0].capabilites: unknown key (did you mean "capabilities"?)',
    ],
    [{ mirrors: ["bad host"] }, "mirrors[0].host: expected a registry host"],
    [{ maxAgee: "3d", offlin: true }, "(and 1 more: ocicache doctor lists them)"],
  ])("a bad config file names the key: %j", async (content, part) => {
    writeFileSync(file, JSON.stringify(content));
    const error = await usageError(() => loadConfig({ env: env() }));
    expect(error.message).toContain(part);
    expect(error.message).toContain(file);
  });

  test("mirrors are hosts or objects in both places; durations may have several parts", async () => {
    writeFileSync(
      file,
      JSON.stringify({
        maxAge: "1d12h",
        mirrors: [{ host: "m1.example", capabilities: ["pull"] }, "m2.example"],
        registries: { "r.example": { mirrors: ["m3.example", { host: "m4.example", path: "/v2/proxy" }] } },
      }),
    );
    const config = await loadConfig({ env: env() });
    expect(config.maxAgeMs).toBe(36 * 3_600_000);
    expect(config.mirrors).toEqual([{ host: "m1.example", capabilities: ["pull"] }, { host: "m2.example" }]);
    expect(config.registries["r.example"]!.mirrors).toEqual([
      { host: "m3.example" },
      { host: "m4.example", path: "/v2/proxy" },
    ]);
    const flagged = await loadConfig({ env: env(), flags: { mirrors: "m5.example" } });
    expect(flagged.mirrors).toEqual([{ host: "m5.example" }]);
  });

  test("a config file that is not JSON, or a --config that does not exist, is a usage error", async () => {
    writeFileSync(file, '{\n  "maxAge": "3d",\n}');
    expect((await usageError(() => loadConfig({ env: env() }))).message).toContain(
      "it is not valid JSON: line 3, column 1: expected a key in double quotes",
    );
    expect((await usageError(() => loadConfig({ env: env(), configPath: join(home, "nope.json") }))).message).toContain(
      "does not exist",
    );
  });
});

describe("flagSettings()", () => {
  test("each key's flag, by its long name: strings as given, switches as true, repeated options joined", () => {
    expect(
      flagSettings({
        "cache-dir": "/c",
        "max-downloads": "3",
        offline: true,
        "public-mirror": false,
        mirror: ["a.example", "b.example:5000"],
        "insecure-registry": ["127.0.0.1:5000"],
        "lock-file": "x.lock",
        quiet: true,
        output: "out",
      }),
    ).toEqual({
      cacheDir: "/c",
      maxConcurrentDownloads: "3",
      offline: "true",
      mirrors: "a.example,b.example:5000",
      insecureRegistries: "127.0.0.1:5000",
      lockFile: "x.lock",
    });
  });
});
