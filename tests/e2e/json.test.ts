/**
 * Every `--json` output and every admin API answer, walked against the one vocabulary (`lib/vocabulary.ts`): the
 * commands through the CLI, the routes over a real socket of `serve`. A command that takes `--json` (from the
 * options table) without a case here fails the suite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { COMMANDS } from "../../lib/cli/options.ts";
import { vocabularyProblems } from "../../lib/vocabulary.ts";
import { runCli } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run, useTempDir } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";
import { startServe } from "../helpers/serve.ts";

const tmp = useTempDir("json");
let registry: RegistryHandle;
let image: SampleImage;

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `json-${run}/app`, "1", { format: "spec", romBytes: [300] });
});
afterAll(() => registry.stop());

const ocicache = async (args: string[]) => {
  const ran = await runCli([...args, "--json"], {
    OCICACHE_DIR: join(tmp.path, "cache"),
    XDG_CONFIG_HOME: join(tmp.path, "config"),
    OCICACHE_AUTO_CLEAN_INTERVAL: "0",
  });
  expect(ran.stderr).not.toContain("error");
  return JSON.parse(ran.stdout) as unknown;
};

/** Each command that takes --json, with the arguments that make it print something worth checking. */
const CASES: Record<string, () => string[][]> = {
  pull: () => [
    ["pull", image.ref],
    ["pull", image.ref, "--all-platforms"],
  ],
  lock: () => [
    ["lock", image.ref, "--lock-file", join(tmp.path, "ocicache.lock")],
    ["lock", "--check", "--lock-file", join(tmp.path, "ocicache.lock")],
  ],
  inspect: () => [["inspect", image.ref]],
  tags: () => [["tags", image.name]],
  ls: () => [["ls"], ["ls", "--blobs"]],
  stats: () => [["stats"]],
  gc: () => [["gc", "--dry-run", "--max-age", "0s", "--grace", "0"]],
  verify: () => [["verify"]],
  rm: () => [["rm", `${image.name}@${image.manifests[host].digest}`]],
  prune: () => [["prune", "--all"]],
  doctor: () => [["doctor"]],
};

describe("one JSON vocabulary", () => {
  test("every command that takes --json has a case here", () => {
    const withJson = Object.entries(COMMANDS)
      .filter(([, command]) => (command.options as readonly string[]).includes("json"))
      .map(([name]) => name);
    expect(Object.keys(CASES).sort()).toEqual(withJson.sort());
  });

  test("every command's --json keeps it", async () => {
    for (const [, argvs] of Object.entries(CASES)) {
      for (const argv of argvs()) {
        if (argv[0] === "rm")
          expect(await ocicache(["pull", `${image.name}@${image.manifests[host].digest}`])).toBeTruthy();
        const printed = await ocicache(argv);
        expect([argv.join(" "), vocabularyProblems(printed)]).toEqual([argv.join(" "), []]);
      }
    }
  });

  test("every admin API answer keeps it, over a real socket", async () => {
    const server = await startServe(tmp.path, registry.host);
    try {
      const token = readFileSync(join(tmp.path, "config", "ocicache", "admin-token"), "utf8").trim();
      const url = (path: string) => `http://${server.host}${path}`;
      const json = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
      const answers: Array<[string, Response]> = [];
      const ask = async (what: string, path: string, init?: RequestInit) =>
        answers.push([what, await fetch(url(path), init)]);
      await ask("pull", "/v1/pull", { method: "POST", headers: json, body: JSON.stringify({ ref: image.ref }) });
      for (const path of ["/healthz", "/readyz", "/v1/stats", "/v1/refs", "/v1/blobs?limit=2", "/v1/nothing"])
        await ask(path, path);
      await ask("gc", "/v1/gc", { method: "POST", headers: json, body: '{"dryRun":true}' });
      await ask("bad body", "/v1/gc", { method: "POST", headers: json, body: '{"dryRun":"yes"}' });
      await ask("rm", `/v1/refs/${encodeURIComponent(image.ref)}`, { method: "DELETE", headers: json });
      for (const [what, response] of answers) {
        const body = await response.json();
        expect([what, vocabularyProblems(body)]).toEqual([what, []]);
      }
    } finally {
      await server.stop();
    }
  });
});
