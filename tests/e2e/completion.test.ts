/**
 * Shell completions as users load them: the compiled binary on PATH as `ocicache`, its script sourced by the real
 * bash, fish and zsh, completing commands, options, option values and the references of a cache filled by a real
 * pull. A name planted in the cache that a shell would expand never reaches one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COMMANDS } from "../../lib/cli/options.ts";
import { compiledBinary } from "../helpers/binary.ts";
import { RUN_ID as run } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

let registry: RegistryHandle;
let image: SampleImage;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `complete-${run}/nginx`, "1.25", { format: "kraftkit" });
  dir = mkdtempSync(join(tmpdir(), "ocicache-completion-"));
  mkdirSync(join(dir, "bin"));
  symlinkSync(compiledBinary(), join(dir, "bin", "ocicache"));
  env = { ...(process.env as Record<string, string>), PATH: `${join(dir, "bin")}:${process.env.PATH}` };
  env.OCICACHE_DIR = join(dir, "cache");
  const pulled = Bun.spawnSync(["ocicache", "pull", image.ref, "-q"], { env });
  expect(pulled.exitCode).toBe(0);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  registry.stop();
});

/** What bash completes `line` (the cursor at its end) to, as readline gets it. */
function bash(line: string): string[] {
  const script = [
    "source <(ocicache completion bash)",
    'COMP_LINE="$1"; COMP_POINT=$' + "{#COMP_LINE}",
    "_ocicache",
    'printf "%s\\n" "$' + '{COMPREPLY[@]}"',
  ].join("\n");
  const ran = Bun.spawnSync(["bash", "-c", script, "bash", line], { env });
  expect(ran.stderr.toString()).toBe("");
  return ran.stdout.toString().split("\n").filter(Boolean);
}

/** What fish completes `line` to: the candidates, without their descriptions. */
function fish(line: string): string[] {
  const ran = Bun.spawnSync(["fish", "-c", `ocicache completion fish | source; complete -C '${line}'`], { env });
  expect(ran.stderr.toString()).toBe("");
  return ran.stdout
    .toString()
    .split("\n")
    .filter(Boolean)
    .map((candidate) => candidate.split("\t")[0]!);
}

describe("bash", () => {
  test("commands, each command's options, and the values of an option", () => {
    expect(bash("ocicache pu")).toEqual(["pull"]);
    expect(bash("ocicache ")).toEqual([...Object.keys(COMMANDS), "help"]);
    expect(bash("ocicache pull --ou")).toEqual(["--output"]);
    expect(bash("ocicache ls --ou")).toEqual([]);
    expect(bash("ocicache -q --cache-dir /tmp pa")).toEqual(["path"]);
    expect(bash("ocicache path x --role ")).toEqual(["kernel", "initrd", "kernel.dbg", "rom"]);
    expect(bash("ocicache pull --progress=j")).toEqual(["json"]);
    expect(bash("ocicache pull --platform linux/a")).toEqual(["linux/amd64", "linux/arm64"]);
    expect(bash("ocicache pull --plat f")).toEqual(["fc"]);
    expect(bash(`ocicache pull -o ${dir}/bi`)).toEqual([`${dir}/bin`]);
    expect(bash("ocicache completion ")).toEqual(["bash", "zsh", "fish", "references"]);
  });

  test("references from the cache, offline; readline gets each from its last word break on (':')", () => {
    const host = image.ref.slice(0, image.ref.indexOf("/"));
    expect(bash(`ocicache path ${host.slice(0, 4)}`)).toEqual([image.ref]);
    // `127.0.0.1:PORT/…`: the word readline replaces starts after the colon.
    expect(bash(`ocicache pull ${host}/complete-${run}/ng`)).toEqual([image.ref.slice(host.indexOf(":") + 1)]);
    expect(bash(`ocicache inspect ${image.ref.slice(0, -2)}`)).toEqual(["1.25"]);
  });
});

describe("fish", () => {
  test("commands, options, values and references", () => {
    expect(fish("ocicache pu")).toEqual(["pull"]);
    expect(fish("ocicache pull --prog")).toEqual(["--progress"]);
    expect(fish("ocicache path x --role ")).toEqual(["initrd", "kernel", "kernel.dbg", "rom"]);
    expect(fish(`ocicache path ${image.ref.slice(0, 9)}`)).toEqual([image.ref]);
  });
});

describe("zsh", () => {
  test("the script parses and registers _ocicache for ocicache under compinit", () => {
    const script = "autoload -U compinit; compinit -u -D; source <(ocicache completion zsh); print $_comps[ocicache]";
    const ran = Bun.spawnSync(["zsh", "-f", "-c", script], { env });
    expect([ran.stdout.toString(), ran.stderr.toString()]).toEqual(["_ocicache\n", ""]);
  });
});

describe("a hostile name in the cache", () => {
  test("is never printed for a shell, and completing runs none of it", () => {
    const index = join(env.OCICACHE_DIR!, "index.json");
    const before = readFileSync(index, "utf8");
    const parsed = JSON.parse(before) as { manifests: Array<{ annotations: Record<string, string> }> };
    const owned = join(dir, "owned");
    const planted = structuredClone(parsed.manifests[0]!);
    planted.annotations["org.opencontainers.image.ref.name"] = `127.0.0.1:1/x/$(touch ${owned}):1`;
    writeFileSync(index, JSON.stringify({ ...parsed, manifests: [...parsed.manifests, planted] }));
    try {
      const listed = Bun.spawnSync(["ocicache", "completion", "references"], { env }).stdout.toString();
      expect(listed).toBe(`${image.ref}\n`);
      expect(bash("ocicache pull 127.0.0.1:1/")).toEqual([]);
      // fish matches loosely (the cached reference may come back): never the planted name.
      expect(fish("ocicache pull 127.0.0.1:1/").filter((name) => name.includes("touch"))).toEqual([]);
      expect(existsSync(owned)).toBe(false);
    } finally {
      writeFileSync(index, before);
    }
  });

  test("an unknown shell is exit 2 with one line", () => {
    const ran = Bun.spawnSync(["ocicache", "completion", "powershell"], { env });
    expect([ran.exitCode, ran.stderr.toString()]).toEqual([
      2,
      'ocicache: error: Cannot make a completion script for "powershell": expected bash, zsh or fish\n',
    ]);
  });
});
