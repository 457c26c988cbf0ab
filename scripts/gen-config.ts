/**
 * Writes what comes from the one table of settings (`lib/config/settings.ts`): the table of
 * `docs/configuration.md` (between its two `settings table` markers) and `config.schema.json`, the JSON Schema of
 * the config file shipped in the package. Run it after changing a setting: `bun scripts/gen-config.ts`; the test
 * suite fails while either is out of date.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CONFIG_SCHEMA_FILE, configJsonSchema } from "../lib/config/config-file.ts";
import { withSettingsTable } from "../lib/config/settings.ts";

const root = join(import.meta.dir, "..");
const docs = join(root, "docs", "configuration.md");
writeFileSync(docs, withSettingsTable(readFileSync(docs, "utf8")));
writeFileSync(join(root, CONFIG_SCHEMA_FILE), `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
// In the repository's own JSON style, as `biome format` (run by the test command) checks it.
Bun.spawnSync(["bun", "x", "biome", "format", "--write", CONFIG_SCHEMA_FILE], { cwd: root });
console.log(`gen-config: docs/configuration.md and ${CONFIG_SCHEMA_FILE}`);
