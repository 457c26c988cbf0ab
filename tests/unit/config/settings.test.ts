import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { OPTIONS } from "../../../lib/cli/options.ts";
import { checkConfigFile, CONFIG_SCHEMA_FILE, configJsonSchema } from "../../../lib/config/config-file.ts";
import { KEYS, LIST_KEYS, withSettingsTable } from "../../../lib/config/settings.ts";
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

  test("each setting's flag is an option of the CLI, repeatable exactly when its variable is a list", () => {
    for (const [key, setting] of Object.entries(KEYS)) {
      if (setting.flag === undefined) continue;
      const option = (OPTIONS as Record<string, { multiple?: boolean }>)[setting.flag.slice(2)];
      expect([key, option !== undefined]).toEqual([key, true]);
      expect([key, option!.multiple === true]).toEqual([key, LIST_KEYS.includes(key as keyof typeof KEYS)]);
    }
  });

  test("a config file naming its JSON Schema in $schema is accepted, the key ignored", () => {
    const file = join(tmp.path, "config.json");
    writeFileSync(file, JSON.stringify({ $schema: "./node_modules/ocicache/config.schema.json", maxAge: "7d" }));
    const checked = checkConfigFile(file);
    expect(checked).toEqual({ file: { raw: { maxAge: "7d" }, registries: {} } });
  });
});

describe("the help of a setting's flag", () => {
  test('names the default the table declares, where it names one ("default: …" describes a rule)', () => {
    for (const [key, setting] of Object.entries(KEYS)) {
      if (setting.flag === undefined) continue;
      const help = (OPTIONS as Record<string, { help: string }>)[setting.flag.slice(2)]!.help;
      const said = /\(default ([^;)]+)/.exec(help)?.[1]?.trim();
      if (said === undefined) continue;
      expect([key, said]).toEqual([key, setting.default.replace(/`/g, "")]);
    }
  });
});
