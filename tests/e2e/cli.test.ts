import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Digest, digestHex } from "../../lib/oci/digest.ts";
import { vocabularyProblems } from "../../lib/vocabulary.ts";
import { CLI, runCli, withoutProgress } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run } from "../helpers/env.ts";
import { pushManifest, pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { startProxy, trickle } from "../helpers/proxy.ts";
import { type RegistryHandle, sharedRegistry, startRegistry } from "../helpers/registry.ts";

let registry: RegistryHandle;
let spec: SampleImage;
let big: SampleImage;

beforeAll(async () => {
  registry = await sharedRegistry();
  spec = await pushSampleImage(registry.url, `cli-${run}/nginx`, "1.25", { format: "spec", romBytes: [3000] });
  big = await pushSampleImage(registry.url, `cli-${run}/big`, "1", {
    format: "kraftkit",
    kernelBytes: 4 * 1024 * 1024,
    initrdBytes: 1024,
  });
});
afterAll(() => registry.stop());

let dir: string;
let cacheDir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-cli-"));
  cacheDir = join(dir, "cache");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ocicache = (args: string[], env: Record<string, string> = {}) => runCli(args, { OCICACHE_DIR: cacheDir, ...env });

function blobs(): string[] {
  const path = join(cacheDir, "blobs", "sha256");
  return existsSync(path) ? readdirSync(path) : [];
}

describe("ocicache pull", () => {
  test("writes the files into -o DIR and prints their paths; the second pull is a hit", async () => {
    const out = join(dir, ".unikraft");
    const first = await ocicache(["pull", spec.ref, "-o", out]);
    expect(first.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["initrd", "kernel", "rom0"]);
    expect(first.messages).toBe("");
    expect(first.stdout.trim().split("\n")).toEqual(["kernel", "initrd", "rom0"].map((f) => join(out, f)));
    expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(spec.manifests[host].files.kernel));

    const second = await ocicache(["pull", spec.ref, "-o", out, "--json"]);
    expect(second.code).toBe(0);
    const result = JSON.parse(second.stdout);
    expect(result.hit).toBe(true);
    expect(result.reference).toBe(spec.ref);
    expect(result.digest).toBe(spec.indexDigest);
    expect(result.manifest).toBe(spec.manifests[host].digest);
    expect(result.files.map((f: { name: string; hit: boolean }) => [f.name, f.hit])).toEqual([
      ["kernel", true],
      ["initrd", true],
      ["rom0", true],
    ]);
  });

  test("pull -o again leaves unchanged outputs alone (same inode, mtime), rewrites a changed one", async () => {
    for (const image of [spec, big]) {
      const out = join(dir, `out-${image.name.split("/").at(-1)}`);
      expect((await ocicache(["pull", image.ref, "-o", out])).code).toBe(0);
      const names = readdirSync(out).sort();
      const before = names.map((name) => statSync(join(out, name)));
      expect((await ocicache(["pull", image.ref, "-o", out])).code).toBe(0);
      const after = names.map((name) => statSync(join(out, name)));
      expect(after.map((s) => [s.ino, s.mtimeMs])).toEqual(before.map((s) => [s.ino, s.mtimeMs]));
      writeFileSync(join(out, "kernel"), "edited by hand");
      expect((await ocicache(["pull", image.ref, "-o", out])).code).toBe(0);
      expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    }
    const records = () => readdirSync(join(cacheDir, "outputs")).length;
    const total = records();
    const gone = join(dir, `out-${spec.name.split("/").at(-1)}`);
    const count = readdirSync(gone).length;
    rmSync(gone, { recursive: true });
    expect((await ocicache(["gc"])).code).toBe(0);
    expect(records()).toBe(total - count);
  });

  test("pull -o --link leaves its hardlinks alone, and replaces a file that is not one", async () => {
    const out = join(dir, "linked");
    expect((await ocicache(["pull", spec.ref, "-o", out, "--link"])).code).toBe(0);
    const before = statSync(join(out, "kernel"));
    expect((await ocicache(["pull", spec.ref, "-o", out, "--link"])).code).toBe(0);
    expect(statSync(join(out, "kernel")).ctimeMs).toBe(before.ctimeMs);
    rmSync(join(out, "kernel"));
    writeFileSync(join(out, "kernel"), spec.manifests[host].files.kernel);
    expect((await ocicache(["pull", spec.ref, "-o", out, "--link"])).code).toBe(0);
    expect(statSync(join(out, "kernel")).ino).toBe(before.ino);
  });

  test("--platform chooses another architecture; a missing one is exit 3 with what is offered", async () => {
    const other = host === "amd64" ? "arm64" : "amd64";
    const ok = await ocicache([
      "pull",
      spec.ref,
      "-o",
      join(dir, "o"),
      "--platform",
      `linux/${other === "amd64" ? "x86_64" : other}`,
    ]);
    expect(ok.code).toBe(0);
    expect(readFileSync(join(dir, "o", "initrd"))).toEqual(Buffer.from(spec.manifests[other].files.initrd));
    const missing = await ocicache(["pull", spec.ref, "--platform", "linux/riscv64"]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("offers linux/amd64 (qemu), linux/arm64 (qemu)");
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
  });

  test.each([
    [["pull", "Bad/Ref"], 2, "bad repository component"],
    [["pull", "repo@sha256:../../etc/passwd"], 2, "bad digest"],
    [["pull"], 2, "expected one or more references"],
    [["pull", "a", "--no-such-flag"], 2, "Cannot parse arguments"],
    [["frobnicate", "x"], 2, "Unknown command"],
    [["path", "127.0.0.1:5000/a:1", "--dry-run"], 2, '"path" takes no option --dry-run (see ocicache path --help)'],
    [["pull", "127.0.0.1:5000/a:1", "--repair"], 2, '"pull" takes no option --repair'],
    [["cat", "127.0.0.1:5000/a:1", "--json"], 2, '"cat" takes no option --json'],
    [["ls", "-qx"], 2, 'unknown option "-x"'],
    [["login"], 2, "run `docker login`"],
    [["path", "127.0.0.1:5000/a:1", "--role", "bios"], 2, '--role takes kernel, initrd, kernel.dbg, rom, not "bios"'],
    [["pull", "127.0.0.1:5000/a:1", "--fresh-for", "soon"], 2, "--fresh-for"],
  ])("%j exits %i with one line naming the problem", async (args, code, part) => {
    const ran = await ocicache(args);
    expect(ran.code).toBe(code);
    expect(ran.stderr).toContain(part);
    expect(ran.stderr.trim().split("\n")).toHaveLength(1);
    expect(ran.stderr).not.toContain("    at ");
    expect(existsSync(join(cacheDir, "blobs"))).toBe(false);
  });

  test("bare ocicache prints the usage on stderr and exits 2; --help prints it on stdout and exits 0", async () => {
    const bare = await ocicache([]);
    expect([bare.code, bare.stdout]).toEqual([2, ""]);
    expect(bare.stderr).toStartWith("Usage: ocicache <command>");
    const help = await ocicache(["--help"]);
    expect([help.code, help.stderr]).toEqual([0, ""]);
    expect(help.stdout).toBe(bare.stderr);
  });

  test("each command's --help (and help COMMAND) prints its usage, its options and an example", async () => {
    const help = await ocicache(["pull", "--help"]);
    expect([help.code, help.stderr]).toEqual([0, ""]);
    expect(help.stdout).toStartWith("Usage: ocicache pull REF");
    expect(help.stdout).toContain("-o, --output DIR");
    expect(help.stdout).toContain("Example:\n  ocicache pull ");
    expect(help.stdout).not.toContain("--repair");
    expect((await ocicache(["help", "pull"])).stdout).toBe(help.stdout);
    const du = await ocicache(["du", "-h"]);
    expect(du.stdout).toStartWith("Usage: ocicache stats | du");
    expect(existsSync(cacheDir)).toBe(false);
  });

  test("short options cluster: -qo DIR is --quiet --output DIR", async () => {
    const out = join(dir, "out");
    const ran = await ocicache(["pull", spec.ref, "-qo", out]);
    expect([ran.code, ran.stderr]).toEqual([0, ""]);
    expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(spec.manifests[host].files.kernel));
  });

  test("an unknown tag is exit 3; an unreachable registry is exit 5", async () => {
    const unknown = await ocicache(["pull", `${spec.name}:nope`]);
    expect(unknown.code).toBe(3);
    const proxy = startProxy(registry.url);
    await proxy.stop();
    const down = await ocicache(["pull", `${proxy.host}/cli-${run}/nginx:1.25`]);
    expect(down.code).toBe(5);
    // Nothing cached: --offline would not help, so the error does not suggest it.
    expect(down.stderr).toBe(`ocicache: error: Cannot reach "${proxy.host}": connection refused\n`);
  });

  test("--offline is suggested only where the cache has a digest; offline warns once however many tags", async () => {
    const proxy = startProxy(registry.url);
    const refs = [`${proxy.host}/cli-${run}/nginx:1.25`, `${proxy.host}/cli-${run}/big:1`];
    expect((await ocicache(["pull", ...refs, "-q"])).code).toBe(0);
    await proxy.stop();
    const refresh = await ocicache(["pull", refs[0]!, "--refresh"]);
    expect(refresh.code).toBe(5);
    expect(refresh.stderr).toContain(`connection refused (--offline uses the cached ${spec.indexDigest})`);
    const offline = await ocicache(["pull", ...refs, "--offline"]);
    expect(offline.code).toBe(0);
    expect(offline.stderr).toBe(
      `ocicache: warning: Offline: tags are their last known digests ("${refs[0]}" is ${spec.indexDigest})\n`,
    );
  });

  test("a registry serving wrong bytes is exit 4 and nothing reaches blobs/", async () => {
    const proxy = startProxy(registry.url, async (request, forward) => {
      const response = await forward();
      if (request.method !== "GET" || !request.url.includes("/blobs/")) return response;
      const bytes = new Uint8Array(await response.arrayBuffer());
      bytes[bytes.length - 1]! ^= 1;
      return new Response(bytes, { headers: response.headers });
    });
    try {
      const ran = await ocicache(["pull", `${proxy.host}/cli-${run}/big:1`, "-o", join(dir, "o")]);
      expect(ran.code).toBe(4);
      expect(ran.stderr).toContain("Cannot verify blob");
      const layers = big.manifests[host].layers.map((l) => digestHex(l.digest as Digest));
      expect(blobs().filter((b) => layers.includes(b))).toEqual([]);
      // Nothing of the wrong bytes reaches the output directory either: not the copy written while it downloaded.
      expect(readdirSync(join(dir, "o"))).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  test("--debug adds the stack trace to the one-line error", async () => {
    const ran = await ocicache(["pull", `${spec.name}:nope`, "--debug"]);
    expect(ran.code).toBe(3);
    expect(ran.stderr).toContain("    at ");
  });
});

describe("a pull killed with SIGKILL mid-download", () => {
  test("leaves no file under blobs/ for that blob, and the next pull succeeds", async () => {
    const kernel = big.manifests[host].layers[0]!;
    const proxy = startProxy(registry.url, async (request, forward) => {
      const response = await forward();
      if (request.method !== "GET" || !request.url.includes(kernel.digest)) return response;
      return trickle(response, 64 * 1024, 20);
    });
    try {
      const proc = Bun.spawn(["bun", CLI, "pull", `${proxy.host}/cli-${run}/big:1`, "-o", join(dir, "o")], {
        env: { ...process.env, OCICACHE_DIR: cacheDir },
        stdout: "ignore",
        stderr: "ignore",
      });
      const tmp = join(cacheDir, "tmp");
      const deadline = Date.now() + 20_000;
      let partial = "";
      while (Date.now() < deadline && partial === "") {
        await Bun.sleep(20);
        const parts = existsSync(tmp)
          ? readdirSync(tmp).filter((f) => f === `${digestHex(kernel.digest as Digest)}.partial`)
          : [];
        if (parts.length > 0 && statSync(join(tmp, parts[0]!)).size > 256 * 1024) partial = parts[0]!;
      }
      expect(partial).not.toBe("");
      proc.kill("SIGKILL");
      expect(await proc.exited).not.toBe(0);
      expect(blobs()).not.toContain(digestHex(kernel.digest as Digest));
    } finally {
      await proxy.stop();
    }
    const again = await ocicache(["pull", `${big.name}:1`, "-o", join(dir, "o")]);
    expect(again.code).toBe(0);
    expect(readFileSync(join(dir, "o", "kernel"))).toEqual(Buffer.from(big.manifests[host].files.kernel));
  });
});

describe("pull of several references, every platform, and what it prints", () => {
  test("several references are pulled in one call; JSON is a list; -o takes exactly one", async () => {
    const ran = await ocicache(["pull", spec.ref, big.ref, "--json"]);
    expect(ran.code).toBe(0);
    const results = JSON.parse(ran.stdout) as Array<{ reference: string; files: Array<{ path: string }> }>;
    expect(results.map((r) => r.reference)).toEqual([spec.ref, big.ref]);
    expect(readFileSync(results[1]!.files[0]!.path)).toEqual(Buffer.from(big.manifests[host].files.kernel));
    const two = await ocicache(["pull", spec.ref, big.ref, "-o", join(dir, "out")]);
    expect([two.code, two.stderr]).toEqual([
      2,
      "ocicache: error: Cannot pull 2 references into one -o DIR: pull each into its own\n",
    ]);
  });

  test("one failing reference among several: the others are cached, its error decides the exit code", async () => {
    const bad = await ocicache(["pull", spec.ref, "Bad/Ref"]);
    expect(bad.code).toBe(2);
    expect(blobs()).toEqual([]);
    const missing = await ocicache(["pull", `${spec.name}:nope`, big.ref]);
    expect(missing.code).toBe(3);
    expect(missing.messages).toContain(`ocicache: error: `);
    const kernel = join(cacheDir, "blobs", "sha256", big.manifests[host].layers[0]!.digest.slice(7));
    expect(missing.stdout.split("\n")[0]).toBe(kernel);
  });

  test("--all-platforms caches every platform of an index, and is refused with --platform", async () => {
    const other = host === "amd64" ? "arm64" : "amd64";
    const ran = await ocicache(["pull", spec.ref, "--all-platforms", "--json"]);
    expect(ran.code).toBe(0);
    const results = JSON.parse(ran.stdout) as Array<{ platform: { architecture: string } }>;
    expect(results.map((r) => r.platform.architecture).sort()).toEqual(["amd64", "arm64"]);
    const offline = await ocicache(["path", spec.ref, "--role", "initrd", "--platform", other, "--offline"]);
    expect(offline.code).toBe(0);
    expect(readFileSync(offline.stdout.trim())).toEqual(Buffer.from(spec.manifests[other].files.initrd));
    expect((await ocicache(["pull", spec.ref, "--all-platforms", "--platform", "arm64"])).code).toBe(2);
  });

  test("--all-platforms -o DIR writes one directory per platform, named with unikraft's plat", async () => {
    const out = join(dir, "every");
    const ran = await ocicache(["pull", spec.ref, "--all-platforms", "-o", out]);
    expect(ran.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["linux-amd64-qemu", "linux-arm64-qemu"]);
    for (const arch of ["amd64", "arm64"] as const) {
      const files = spec.manifests[arch].files;
      expect(readFileSync(join(out, `linux-${arch}-qemu`, "kernel"))).toEqual(Buffer.from(files.kernel));
      expect(readFileSync(join(out, `linux-${arch}-qemu`, "initrd"))).toEqual(Buffer.from(files.initrd));
    }
    expect(ran.stdout.split("\n")).toContain(join(out, "linux-arm64-qemu", "kernel"));
  });

  test("--all-platforms -o refuses a platform the registry names with a path in it, writing nothing", async () => {
    const repo = spec.name.slice(spec.name.indexOf("/") + 1);
    const indexType = "application/vnd.oci.image.index.v1+json";
    const got = await fetch(`${registry.url}/v2/${repo}/manifests/${spec.indexDigest}`, {
      headers: { Accept: indexType },
    });
    const index = (await got.json()) as { manifests: Array<{ platform: { variant?: string } }> };
    // Joined to DIR unchecked, DIR/linux-amd64-v8/../../../escaped-qemu would be beside DIR's parent.
    index.manifests[0]!.platform.variant = "v8/../../../escaped";
    await pushManifest(registry.url, repo, "climb", indexType, JSON.stringify(index));
    const out = join(dir, "climb", "out");
    const ran = await ocicache(["pull", `${spec.name}:climb`, "--all-platforms", "-o", out]);
    expect(ran.code).toBe(4);
    expect(ran.messages).toMatch(
      /^ocicache: error: Cannot name a directory for platform "linux-\w+-v8\/\.\.\/\.\.\/\.\.\/escaped-qemu"/,
    );
    // Refused before any directory is made: not DIR, and not where the name points.
    expect([existsSync(join(dir, "climb")), existsSync(join(dir, "escaped-qemu"))]).toEqual([false, false]);
  });

  test("in a log (stderr not a terminal) a pull writes a line per download and a summary; -q nothing", async () => {
    const ran = await ocicache(["pull", big.ref]);
    const kernel = big.manifests[host].layers[0]!;
    const short = kernel.digest.slice(0, 19);
    expect(ran.stderr).toContain(`ocicache: fetching ${big.ref} kernel (${short}, 4.0 MiB)\n`);
    const ref = big.ref.replaceAll(".", "\\.");
    expect(ran.stderr).toMatch(new RegExp(`ocicache: fetched ${ref} kernel \\(4\\.0 MiB in [^)]+\\)\n`));
    expect(ran.stderr).toMatch(new RegExp(`ocicache: ${big.ref.replaceAll(".", "\\.")}: fetched 3 blobs \\(`));
    expect(ran.messages).toBe("");
    expect((await ocicache(["pull", big.ref])).stderr).toBe("");
    const quiet = await ocicache(["pull", spec.ref, "-q"]);
    expect([quiet.code, quiet.stderr]).toEqual([0, ""]);
  });

  test("--progress=json writes a JSON event a line on stderr, beside --json; plain: a log on a terminal", async () => {
    const ran = await ocicache(["pull", spec.ref, "--json", "--progress=json"]);
    expect(ran.code).toBe(0);
    expect(JSON.parse(ran.stdout).reference).toBe(spec.ref);
    const events = ran.stderr
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(vocabularyProblems(events)).toEqual([]);
    const layer = spec.manifests[host].layers[0]!;
    expect(events[0]).toMatchObject({
      event: "fetching",
      reference: spec.ref,
      digest: layer.digest,
      bytes: layer.size,
    });
    expect(events[0].files.sort()).toEqual(["initrd", "kernel"]);
    const fetched = events.filter((e) => e.event === "fetched" && e.files[0] !== "config").map((e) => e.digest);
    expect(fetched.sort()).toEqual(spec.manifests[host].layers.map((l) => l.digest).sort());
    expect(events.at(-1)).toMatchObject({ event: "done", blobCount: 3 });
    const bad = await ocicache(["pull", spec.ref, "--progress", "fancy"]);
    expect([bad.code, bad.stderr]).toEqual([
      2,
      'ocicache: error: Cannot parse arguments: --progress takes auto, plain, json, not "fancy"\n',
    ]);
    const script = `bun ${CLI} pull ${big.ref} --progress plain -o ${join(dir, "plain")}`;
    const tty = Bun.spawnSync(["script", "-qec", script, "/dev/null"], {
      env: { ...process.env, OCICACHE_DIR: cacheDir },
    });
    expect(tty.stdout.toString()).toContain(`ocicache: fetching ${big.ref} kernel (`);
    expect(tty.stdout.toString()).not.toContain("\x1b[2K");
  });

  test("at 80 columns: the progress line names the image and its files, ls keeps repository and tag", async () => {
    // 4 MiB in 256 KiB steps 20 ms apart: a third of a second of drawing.
    const proxy = startProxy(registry.url, async (request, forward) => {
      const response = await forward();
      return request.url.includes("/blobs/") ? trickle(response, 256 * 1024, 20) : response;
    });
    try {
      const ref = `${proxy.host}/cli-${run}/big:1`;
      const script = `stty cols 80 rows 24; bun ${CLI} pull ${ref} -o ${join(dir, "o80")}; COLUMNS= bun ${CLI} ls`;
      // Not spawnSync: the proxy runs in this process.
      const tty = Bun.spawn(["script", "-qec", script, "/dev/null"], {
        env: { ...process.env, OCICACHE_DIR: cacheDir },
        stdout: "pipe",
      });
      const out = await new Response(tty.stdout).text();
      const drawn = out.split("\r\x1b[2K").filter((line) => line.includes(" / "));
      expect(drawn.length).toBeGreaterThan(0);
      for (const line of drawn) expect(line.length).toBeLessThan(80);
      // The host goes first: the repository, the tag and the file stay.
      expect(
        drawn.some((line) => /^[^ ]*…\/cli-[^/]+\/big:1 kernel/.test(line) || line.startsWith(`${ref} kernel`)),
      ).toBe(true);
      const rows = out.split(/\r?\n/).filter((line) => line.includes("big:1") && !line.includes(" / "));
      expect(rows.length).toBe(1);
      expect(rows[0]!.length).toBeLessThanOrEqual(80);
      expect(rows[0]).toMatch(/^\S*\/big:1 /);
    } finally {
      await proxy.stop();
    }
  });

  test("on a terminal, pull labels each path with its file's name; through a pipe the paths are bare", async () => {
    const script = `bun ${CLI} pull ${spec.ref} -q`;
    const tty = Bun.spawnSync(["script", "-qec", script, "/dev/null"], {
      env: { ...process.env, OCICACHE_DIR: cacheDir },
    });
    const lines = tty.stdout.toString().trim().split(/\r?\n/);
    expect(lines.map((line) => line.split(/\s+/)[0])).toEqual(["kernel", "initrd", "rom0"]);
    expect(lines[0]).toContain(`kernel  ${join(cacheDir, "blobs", "sha256")}/`);
  });

  test("on a terminal, a platform named by the registry with control characters is printed escaped", async () => {
    const repo = spec.name.slice(spec.name.indexOf("/") + 1);
    const indexType = "application/vnd.oci.image.index.v1+json";
    const got = await fetch(`${registry.url}/v2/${repo}/manifests/${spec.indexDigest}`, {
      headers: { Accept: indexType },
    });
    const index = (await got.json()) as { manifests: Array<{ platform: { variant?: string } }> };
    for (const m of index.manifests) m.platform.variant = "v8\u001b]0;owned\u0007";
    await pushManifest(registry.url, repo, "escaped", indexType, JSON.stringify(index));
    const script = `bun ${CLI} pull ${spec.name}:escaped ${spec.ref} -q`;
    const tty = Bun.spawnSync(["script", "-qec", script, "/dev/null"], {
      env: { ...process.env, OCICACHE_DIR: cacheDir },
    });
    const out = tty.stdout.toString();
    expect(out).toContain(`${spec.name}:escaped (`);
    expect(out).toContain("v8\\x1b]0;owned\\x07");
    expect(out).not.toContain("\u001b]0;");
  });
});

describe("ocicache path and cat", () => {
  test("path --role prints the cached kernel of a digest-pinned image, with no network the second time", async () => {
    const proxy = startProxy(registry.url);
    const pinned = `${proxy.host}/cli-${run}/nginx@${spec.indexDigest}`;
    const first = await ocicache(["path", pinned, "--role", "kernel"]);
    expect(first.code).toBe(0);
    const path = first.stdout.trim();
    expect(path.startsWith(join(cacheDir, "blobs", "sha256"))).toBe(true);
    expect(readFileSync(path)).toEqual(Buffer.from(spec.manifests[host].files.kernel));
    await proxy.stop();
    const second = await ocicache(["path", pinned, "--role", "kernel"]);
    expect(second).toMatchObject({ code: 0, stdout: `${path}\n`, stderr: "" });
  });

  test("cat writes one blob to stdout, verified, from the registry and then from the cache", async () => {
    const layer = spec.manifests[host].layers[1]!;
    const ref = `${spec.name}@${layer.digest}`;
    const first = await ocicache(["cat", ref]);
    expect(first.code).toBe(0);
    expect(first.bytes).toEqual(new Uint8Array(spec.manifests[host].files.roms[0]!));
    expect(blobs()).toContain(digestHex(layer.digest as Digest));
    const second = await ocicache(["cat", ref, "--offline"]);
    expect(second.bytes).toEqual(new Uint8Array(spec.manifests[host].files.roms[0]!));
  });

  test("cat re-hashes a cached blob (no descriptor gives its size): a truncated one is fetched again", async () => {
    const layer = spec.manifests[host].layers[1]!;
    const ref = `${spec.name}@${layer.digest}`;
    expect((await ocicache(["cat", ref])).code).toBe(0);
    const path = join(cacheDir, "blobs", "sha256", digestHex(layer.digest as Digest));
    chmodSync(path, 0o644);
    truncateSync(path, 10);
    const again = await ocicache(["cat", ref]);
    expect(again.code).toBe(0);
    expect(again.bytes).toEqual(new Uint8Array(spec.manifests[host].files.roms[0]!));
    expect(again.stderr).toContain("does not match its digest");
  });

  test("cat --role writes a file taken out of the tar layer", async () => {
    const ran = await ocicache(["cat", spec.ref, "--role", "initrd"]);
    expect(ran.code).toBe(0);
    expect(ran.bytes).toEqual(new Uint8Array(spec.manifests[host].files.initrd));
  });

  test("cat into a reader that stops early (| head) exits 0 quietly", async () => {
    const layer = big.manifests[host].layers[0]!;
    const script = `bun ${CLI} cat ${big.name}@${layer.digest} | head -c 10 > /dev/null; echo "\${PIPESTATUS[0]}"`;
    const ran = Bun.spawnSync(["bash", "-c", script], {
      env: { ...process.env, OCICACHE_DIR: cacheDir },
      stderr: "pipe",
    });
    expect(ran.stdout.toString().trim()).toBe("0");
    expect(withoutProgress(ran.stderr.toString())).toBe("");
  });

  test("path and cat of a tag without --role are usage errors", async () => {
    expect((await ocicache(["path", spec.ref])).code).toBe(2);
    expect((await ocicache(["cat", spec.ref])).code).toBe(2);
  });
});

describe("credentials from the docker config", () => {
  let secured: RegistryHandle;
  beforeAll(async () => {
    const htpasswd = join(tmpdir(), `ocicache-htpasswd-${run}`);
    expect(Bun.spawnSync(["htpasswd", "-Bbc", htpasswd, "dave", "hunter2-secret"]).exitCode).toBe(0);
    secured = await startRegistry({ htpasswd });
    await pushSampleImage(secured.url, "private/app", "1", {
      format: "kraftkit",
      headers: { Authorization: `Basic ${btoa("dave:hunter2-secret")}` },
    });
  });
  afterAll(() => secured.stop());

  function config(password: string): string {
    const configDir = join(dir, "docker");
    mkdirSync(configDir, { recursive: true });
    writeFileSync(
      join(configDir, "config.json"),
      JSON.stringify({ auths: { [secured.host]: { auth: btoa(`dave:${password}`) } } }),
    );
    return configDir;
  }

  test("pulls with the credentials in $DOCKER_CONFIG/config.json", async () => {
    const ran = await ocicache(["pull", `${secured.host}/private/app:1`, "-o", join(dir, "o")], {
      DOCKER_CONFIG: config("hunter2-secret"),
    });
    expect(ran.code).toBe(0);
    expect(existsSync(join(dir, "o", "kernel"))).toBe(true);
  });

  test("wrong credentials exit 6, and the secret appears nowhere", async () => {
    const ran = await ocicache(["pull", `${secured.host}/private/app:1`, "--debug"], {
      DOCKER_CONFIG: config("wrong-hunter3"),
    });
    expect(ran.code).toBe(6);
    expect(ran.stderr + ran.stdout).not.toContain("hunter3");
    expect(ran.stderr + ran.stdout).not.toContain(btoa("dave:wrong-hunter3"));
  });
});

describe("a local OCI layout as the source", () => {
  /** The image copied by skopeo into an OCI layout of its own, tagged 1.25. */
  function skopeoLayout(): string {
    const layout = join(dir, "layout");
    const argv = ["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", `docker://${spec.ref}`];
    expect(Bun.spawnSync([...argv, `oci:${layout}:1.25`]).exitCode).toBe(0);
    return layout;
  }

  test("oci:DIR:tag (written by skopeo) is read in place and nothing enters the cache", async () => {
    const layout = skopeoLayout();
    const out = join(dir, "out");
    const ran = await ocicache(["pull", `oci:${layout}:1.25`, "-o", out]);
    expect(ran.code).toBe(0);
    expect(readFileSync(join(out, "kernel"))).toEqual(Buffer.from(spec.manifests[host].files.kernel));
    expect(readFileSync(join(out, "rom0"))).toEqual(Buffer.from(spec.manifests[host].files.roms[0]!));
    expect(blobs()).toEqual([]);
  });

  test("path and cat of a file in a tar layer of oci:DIR work (it is taken out into the cache)", async () => {
    const layout = skopeoLayout();
    const path = await ocicache(["path", `oci:${layout}:1.25`, "--role", "kernel"]);
    expect(path.code).toBe(0);
    expect(path.stdout.trim().startsWith(join(dir, "cache", "blobs", "sha256"))).toBe(true);
    expect(readFileSync(path.stdout.trim())).toEqual(Buffer.from(spec.manifests[host].files.kernel));
    const cat = await ocicache(["cat", `oci:${layout}:1.25`, "--role", "initrd"]);
    expect(cat.code).toBe(0);
    expect(Buffer.from(cat.bytes)).toEqual(Buffer.from(spec.manifests[host].files.initrd));
    const missing = await ocicache(["path", `oci:${layout}:9.9`, "--role", "kernel"]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('Cannot find "9.9"');
  });
});

test("mod.ts is the library when imported and the CLI when run", async () => {
  const version = (await Bun.file(join(import.meta.dir, "..", "..", "package.json")).json()).version;
  const run = Bun.spawnSync(["bun", join(import.meta.dir, "..", "..", "mod.ts"), "--version"]);
  expect(run.exitCode).toBe(0);
  expect(run.stdout.toString().trim()).toBe(version);
  const library = await import("../../mod.ts");
  expect(typeof library.pullImage).toBe("function");
  expect(typeof library.main).toBe("function");
});

test("--version prints the package version", async () => {
  const ran = await ocicache(["--version"]);
  expect(ran.stdout.trim()).toBe((await Bun.file(join(import.meta.dir, "..", "..", "package.json")).json()).version);
});
