import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { OPTIONS } from "../../../lib/cli/options.ts";
import { DEFAULTS } from "../../../lib/config/config.ts";
import { CONFIG_SCHEMA_FILE, checkConfigFile, configJsonSchema } from "../../../lib/config/config-file.ts";
import { KEYS, type Setting, withSettingsTable } from "../../../lib/config/settings.ts";
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_LOW_SPEED_BYTES_PER_SECOND,
  DEFAULT_LOW_SPEED_WINDOW_MS,
} from "../../../lib/oci/limits.ts";
import { useTempDir } from "../../helpers/env.ts";

const ROOT = join(import.meta.dir, "..", "..", "..");
const tmp = useTempDir("settings");

describe("the one table of settings", () => {
  test("docs/configuration.md's table is the one the table writes (bun scripts/gen-config.ts)", () => {
    const docs = readFileSync(join(ROOT, "docs", "configuration.md"), "utf8");
    expect(withSettingsTable(docs)).toBe(docs);
  });

  test("config.schema.json is the JSON Schema of the zod schema that checks the file, shipped in the package", () => {
    const shipped = JSON.parse(readFileSync(join(ROOT, CONFIG_SCHEMA_FILE), "utf8"));
    expect(shipped).toEqual(JSON.parse(JSON.stringify(configJsonSchema())));
    const properties = Object.keys(shipped.properties).sort();
    expect(properties).toEqual([...Object.keys(KEYS), "$schema", "registries"].sort());
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files: string[] };
    expect(pkg.files).toContain(CONFIG_SCHEMA_FILE);
  });

  test("each setting's flag is an option of the CLI, its help ending with the default it parses to", () => {
    for (const [key, setting] of Object.entries(KEYS) as Array<[string, Setting]>) {
      if (setting.flag === undefined) continue;
      const option = (OPTIONS as Record<string, { help: string; multiple?: boolean }>)[setting.flag.name]!;
      // Repeatable exactly when its value is a list, as its variable's commas give one.
      const list = Array.isArray((DEFAULTS as Record<string, unknown>)[setting.field]);
      expect([key, option.multiple === true]).toEqual([key, list]);
      if (setting.default !== undefined && setting.default !== "")
        expect([key, option.help.endsWith(`(default ${setting.default})`)]).toEqual([key, true]);
    }
  });

  test("the defaults are the bounds the registry client and the downloads fall back on", () => {
    expect(DEFAULTS.idleTimeoutMs).toBe(DEFAULT_IDLE_TIMEOUT_MS);
    expect(DEFAULTS.lockTimeoutMs).toBe(DEFAULT_LOCK_TIMEOUT_MS);
    expect(DEFAULTS.lowSpeedLimitBytes).toBe(DEFAULT_LOW_SPEED_BYTES_PER_SECOND);
    expect(DEFAULTS.lowSpeedTimeMs).toBe(DEFAULT_LOW_SPEED_WINDOW_MS);
    expect(DEFAULTS.maxSizeBytes).toBe(10 * 2 ** 30);
  });

  test("a config file naming its JSON Schema in $schema is accepted, the key ignored", () => {
    const file = join(tmp.path, "config.json");
    writeFileSync(file, JSON.stringify({ $schema: "./node_modules/ocicache/config.schema.json", maxAge: "7d" }));
    const checked = checkConfigFile(file);
    expect(checked).toEqual({ file: { raw: { maxAge: "7d" }, registries: {} } });
  });
});
