import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  closeSync,
  existsSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Digest, digestHex, parseDigest } from "../../lib/oci/digest.ts";
import { runCli } from "../helpers/cli.ts";
import { HOST_ARCH as host, RUN_ID as run } from "../helpers/env.ts";
import { pushSampleImage, type SampleImage } from "../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../helpers/registry.ts";

const KERNEL_BYTES = 300_000;

let registry: RegistryHandle;
let image: SampleImage;
let tarImage: SampleImage;
let kernel: Digest;

beforeAll(async () => {
  registry = await sharedRegistry();
  image = await pushSampleImage(registry.url, `hostile-cache-${run}/app`, "1", {
    format: "kraftkit",
    kernelBytes: KERNEL_BYTES,
    initrdBytes: 40_000,
  });
  tarImage = await pushSampleImage(registry.url, `hostile-cache-${run}/tar`, "1", {
    format: "spec",
    kernelBytes: 100_000,
    initrdBytes: 100_000,
  });
  kernel = parseDigest(image.manifests[host].layers[0]!.digest);
});
afterAll(() => registry.stop());

let dir: string;
let cacheDir: string;
/** A file of the user's that a planted link points at: it must come out of every test unchanged. */
let victim: string;
const VICTIM_BYTES = new TextEncoder().encode("the user's own file\n".repeat(100));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ocicache-hostile-cache-"));
  cacheDir = join(dir, "cache");
  victim = join(dir, "victim.txt");
  writeFileSync(victim, VICTIM_BYTES, { mode: 0o600 });
  mkdirSync(join(cacheDir, "blobs", "sha256"), { recursive: true });
  mkdirSync(join(cacheDir, "tmp"), { recursive: true });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ocicache = (args: string[], extra: Record<string, string> = {}) =>
  runCli(args, {
    OCICACHE_DIR: cacheDir,
    XDG_CONFIG_HOME: join(dir, "config"),
    OCICACHE_AUTO_CLEAN_INTERVAL: "0",
    ...extra,
  });

function expectVictimUntouched(): void {
  const stat = statSync(victim);
  expect(stat.mode & 0o777).toBe(0o600);
  expect(readFileSync(victim)).toEqual(Buffer.from(VICTIM_BYTES));
}

const kernelBlob = () => join(cacheDir, "blobs", "sha256", digestHex(kernel));

describe("a hostile cache directory", () => {
  test("a partial file planted as a link to a user's file: not written, chmodded or served", async () => {
    symlinkSync(victim, join(cacheDir, "tmp", `${digestHex(kernel)}.partial`));
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")]);
    expect(pulled.code).toBe(0);
    expectVictimUntouched();
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    expect(lstatSync(kernelBlob()).isFile()).toBe(true);
  });

  test("a partial file planted as a hardlink to a user's file: not appended to or truncated", async () => {
    const { linkSync } = await import("node:fs");
    linkSync(victim, join(cacheDir, "tmp", `${digestHex(kernel)}.partial`));
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")]);
    expect(pulled.code).toBe(0);
    expectVictimUntouched();
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
  });

  test("tmp/gc.stamp planted as a link: the automatic cleanup does not truncate its target", async () => {
    const stamp = join(cacheDir, "tmp", "gc.stamp");
    symlinkSync(victim, stamp);
    lutimesSync(stamp, new Date(0), new Date(0));
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")], { OCICACHE_AUTO_CLEAN_INTERVAL: "1s" });
    expect(pulled.code).toBe(0);
    expectVictimUntouched();
    expect(lstatSync(stamp).isFile()).toBe(true);
  });

  test("tmp/ planted as a link to a directory: its files survive pulls and gc; pulls work uncached", async () => {
    const elsewhere = join(dir, "elsewhere");
    mkdirSync(elsewhere);
    const precious = join(elsewhere, "precious.part");
    writeFileSync(precious, "keep me");
    utimesSync(precious, new Date(0), new Date(0));
    rmSync(join(cacheDir, "tmp"), { recursive: true });
    symlinkSync(elsewhere, join(cacheDir, "tmp"));
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")], { OCICACHE_AUTO_CLEAN_INTERVAL: "1s" });
    expect(pulled.code).toBe(0);
    expect(pulled.stderr).toContain("tmp/ is a symbolic link");
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    const gc = await ocicache(["gc", "--max-age", "0s", "--grace", "0s"]);
    expect(gc.code).toBe(0);
    expect(readdirSync(elsewhere)).toEqual(["precious.part"]);
    expect(readdirSync(join(cacheDir, "blobs", "sha256"))).toEqual([]);
  });

  for (const name of ["uses", "outputs", "refs"])
    test(`${name}/ planted as a link to a directory: nothing is written into it, the cache is not used`, async () => {
      const elsewhere = join(dir, `elsewhere-${name}`);
      mkdirSync(elsewhere);
      rmSync(join(cacheDir, name), { recursive: true, force: true });
      symlinkSync(elsewhere, join(cacheDir, name));
      const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")]);
      expect(pulled.code).toBe(0);
      expect(pulled.stderr).toContain(`${name}/ is a symbolic link`);
      expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
      expect(readdirSync(elsewhere)).toEqual([]);
    });

  test("blobs/ planted as a link to another directory: nothing is read from it or written into it", async () => {
    const elsewhere = join(dir, "elsewhere-blobs");
    mkdirSync(join(elsewhere, "sha256"), { recursive: true });
    writeFileSync(join(elsewhere, "sha256", digestHex(kernel)), new Uint8Array(KERNEL_BYTES));
    rmSync(join(cacheDir, "blobs"), { recursive: true });
    symlinkSync(elsewhere, join(cacheDir, "blobs"));
    const pulled = await ocicache(["pull", `${image.name}@${image.indexDigest}`, "-o", join(dir, "out")]);
    expect(pulled.code).toBe(0);
    expect(pulled.stderr).toContain("blobs/ is a symbolic link");
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    expect(readdirSync(join(elsewhere, "sha256"))).toEqual([digestHex(kernel)]);
  });

  test("a blob planted as a link to a same-sized file is no hit: verify reports it, pull replaces it", async () => {
    const lookalike = join(dir, "lookalike");
    writeFileSync(lookalike, new Uint8Array(KERNEL_BYTES));
    symlinkSync(lookalike, kernelBlob());
    const verify = await ocicache(["verify", "--json"]);
    expect(verify.code).toBe(4);
    expect(JSON.parse(verify.stdout).corrupt).toEqual([{ digest: kernel, reason: "not a regular file", bytes: 0 }]);
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")]);
    expect(pulled.code).toBe(0);
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    expect(lstatSync(kernelBlob()).isFile()).toBe(true);
    expect(readFileSync(lookalike)).toEqual(Buffer.from(new Uint8Array(KERNEL_BYTES)));
  });

  test("cleanup removes a planted blob link itself, never the file it points to", async () => {
    symlinkSync(victim, kernelBlob());
    const verify = await ocicache(["verify", "--repair", "--json"]);
    expect(verify.code).toBe(0);
    expect(existsSync(kernelBlob())).toBe(false);
    symlinkSync(victim, kernelBlob());
    const pruned = await ocicache(["prune", "--all"]);
    expect(pruned.code).toBe(0);
    expectVictimUntouched();
  });

  test("a planted lock naming a live pid (1) does not hold the pull: taken over once silent", async () => {
    const lock = join(cacheDir, "tmp", `${digestHex(kernel)}.lock`);
    writeFileSync(lock, `1 ${Date.now()} planted`);
    utimesSync(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const started = Date.now();
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out")]);
    expect(pulled.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(lstatSync(kernelBlob()).isFile()).toBe(true);
    expect(existsSync(lock)).toBe(false);
  });

  test("a fresh planted lock whose partial file never grows is given up on after the idle timeout", async () => {
    const lock = join(cacheDir, "tmp", `${digestHex(kernel)}.lock`);
    writeFileSync(lock, `1 ${Date.now()} planted`);
    const started = Date.now();
    const pulled = await ocicache(["pull", image.ref, "-o", join(dir, "out"), "--idle-timeout", "1s"]);
    expect(pulled.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(Buffer.from(image.manifests[host].files.kernel));
    expect(lstatSync(kernelBlob()).isFile()).toBe(true);
  });
});

describe("files taken out of tar layers", () => {
  const kernelBytes = () => Buffer.from(tarImage.manifests[host].files.kernel);

  /** Point the recorded kernel of every entry at the initrd's blob (same size): a planted mapping. */
  function plantKernelMapping(): Digest {
    const indexPath = join(cacheDir, "index.json");
    const index = JSON.parse(readFileSync(indexPath, "utf8"));
    let planted: Digest | undefined;
    for (const entry of index.manifests) {
      const derived = JSON.parse(entry.annotations["io.ocicache.derived"]);
      const kernelKey = Object.keys(derived).find((k) => k.endsWith("unikraft/bin/kernel"))!;
      const initrdKey = Object.keys(derived).find((k) => k.endsWith("unikraft/bin/initrd"))!;
      derived[kernelKey] = derived[initrdKey];
      planted = derived[initrdKey].digest;
      entry.annotations["io.ocicache.derived"] = JSON.stringify(derived);
    }
    writeFileSync(indexPath, JSON.stringify(index));
    return planted!;
  }

  test("a planted mapping is used for no other reference, re-checked under --verify, and found by verify", async () => {
    expect((await ocicache(["pull", tarImage.ref, "-o", join(dir, "first")])).code).toBe(0);
    plantKernelMapping();
    const byDigest = await ocicache([
      "pull",
      `${tarImage.name}@${tarImage.indexDigest}`,
      "--verify",
      "-o",
      join(dir, "by-digest"),
    ]);
    expect(byDigest.code).toBe(0);
    expect(readFileSync(join(dir, "by-digest", "kernel"))).toEqual(kernelBytes());
    const verify = await ocicache(["verify", "--json"]);
    expect(verify.code).toBe(4);
    const wrong = JSON.parse(verify.stdout).wrongFiles;
    expect(wrong.map((w: { reference: string; path: string }) => [w.reference, w.path])).toContainEqual([
      tarImage.ref,
      "unikraft/bin/kernel",
    ]);
    const verified = await ocicache(["pull", tarImage.ref, "--verify", "-o", join(dir, "verified")]);
    expect(verified.code).toBe(0);
    expect(verified.stderr).toContain("Dropping the recorded blob");
    expect(readFileSync(join(dir, "verified", "kernel"))).toEqual(kernelBytes());
    expect((await ocicache(["verify"])).code).toBe(0);
  });

  test("verify --repair drops a wrong mapping, and the next pull takes the file out of its layer again", async () => {
    expect((await ocicache(["pull", tarImage.ref, "-o", join(dir, "first")])).code).toBe(0);
    plantKernelMapping();
    const repaired = await ocicache(["verify", "--repair"]);
    expect(repaired.code).toBe(0);
    expect(repaired.stdout).toContain("dropped wrong record");
    expect((await ocicache(["verify"])).code).toBe(0);
    expect((await ocicache(["pull", tarImage.ref, "-o", join(dir, "again")])).code).toBe(0);
    expect(readFileSync(join(dir, "again", "kernel"))).toEqual(kernelBytes());
  });

  test("--verify re-hashes a damaged kernel taken out of a tar layer and takes it out again", async () => {
    const path = await ocicache(["path", tarImage.ref, "--role", "kernel"]);
    expect(path.code).toBe(0);
    const blob = path.stdout.trim();
    const fd = openSync(blob, "r+");
    writeSync(fd, new Uint8Array([1, 2, 3, 4]), 0, 4, 100);
    closeSync(fd);
    // An output is written from the layer, never from the derived blob: right, with or without --verify.
    const pulled = await ocicache(["pull", tarImage.ref, "-o", join(dir, "out")]);
    expect(pulled.code).toBe(0);
    expect(readFileSync(join(dir, "out", "kernel"))).toEqual(kernelBytes());
    // path --verify re-hashes the derived blob, and takes the file out of the layer again.
    const repaired = await ocicache(["path", tarImage.ref, "--role", "kernel", "--verify"]);
    expect(repaired.stdout.trim()).toBe(blob);
    expect(readFileSync(blob)).toEqual(kernelBytes());
  });
});

describe("remembered hits", () => {
  const pinned = () => `${image.name}@${image.indexDigest}`;
  const kernelBytes = () => Buffer.from(image.manifests[host].files.kernel);
  const initrdBytes = () => Buffer.from(image.manifests[host].files.initrd);
  const blobPath = (digest: string) => join(cacheDir, "blobs", "sha256", digestHex(digest as Digest));
  const path = async (role: string, args: string[] = []) => {
    const ran = await ocicache(["path", pinned(), "--role", role, ...args]);
    expect(ran.code).toBe(0);
    return ran;
  };
  /** The memo of the pinned reference, which remembers what its pulls came to. */
  const memoFile = () => {
    const name = readdirSync(join(cacheDir, "refs")).find((n) =>
      readFileSync(join(cacheDir, "refs", n), "utf8").includes('"images"'),
    );
    return join(cacheDir, "refs", name!);
  };

  test("a second path reads no manifest: one damaged since is left to verify, the file is right", async () => {
    await path("kernel");
    const manifest = blobPath(image.manifests[host].digest);
    const damaged = Buffer.from(readFileSync(manifest)).fill(0x20);
    rmSync(manifest);
    writeFileSync(manifest, damaged);
    const again = await path("kernel");
    expect(again.messages).toBe("");
    expect(readFileSync(again.stdout.trim())).toEqual(kernelBytes());
    expect(readFileSync(manifest)).toEqual(damaged);
    // --verify walks the image again: the damaged manifest is dropped and fetched anew.
    const verified = await path("kernel", ["--verify"]);
    expect(verified.messages).toContain("Dropping cached manifest");
    expect(readFileSync(verified.stdout.trim())).toEqual(kernelBytes());
  });

  test("a blob removed or cut short since is fetched again, never handed out", async () => {
    const first = (await path("kernel")).stdout.trim();
    rmSync(first);
    expect(readFileSync((await path("kernel")).stdout.trim())).toEqual(kernelBytes());
    rmSync(first);
    writeFileSync(first, kernelBytes().subarray(0, 1000));
    const again = await path("kernel");
    expect(again.stdout.trim()).toBe(first);
    expect(readFileSync(first)).toEqual(kernelBytes());
  });

  test("each choice of files is its own: kernel, initrd", async () => {
    await path("kernel");
    await path("initrd");
    expect(readFileSync((await path("initrd")).stdout.trim())).toEqual(initrdBytes());
    expect(readFileSync((await path("kernel")).stdout.trim())).toEqual(kernelBytes());
  });

  test("a hit answered from the memo records the uses a walk records: gc keeps what was just used", async () => {
    await path("kernel");
    const old = new Date(Date.now() - 30 * 86_400_000);
    for (const name of readdirSync(join(cacheDir, "uses"))) utimesSync(join(cacheDir, "uses", name), old, old);
    await path("kernel");
    const manifests = [image.indexDigest, image.manifests[host].digest];
    for (const digest of [...manifests, kernel])
      expect(statSync(join(cacheDir, "uses", digestHex(digest as Digest))).mtimeMs).toBeGreaterThan(
        Date.now() - 60_000,
      );
    const gc = await ocicache(["gc", "--max-age", "7d", "--grace", "0"]);
    expect(gc.code).toBe(0);
    expect(readFileSync((await path("kernel", ["--offline"])).stdout.trim())).toEqual(kernelBytes());
  });

  test("a planted memo naming another blob: --verify walks past it, and verify drops every memo", async () => {
    await path("kernel");
    await path("initrd");
    const initrd = (await path("initrd")).stdout.trim();
    const memo = JSON.parse(readFileSync(memoFile(), "utf8"));
    const [kernelChoice] = Object.keys(memo.images).filter((k) => k.includes('"kernel"'));
    const initrdFile = Object.values(memo.images as Record<string, { files: unknown[] }>)
      .flatMap((i) => i.files)
      .find((f) => (f as { role: string }).role === "initrd");
    memo.images[kernelChoice!].files = [{ ...(initrdFile as object), role: "kernel", name: "kernel" }];
    writeFileSync(memoFile(), JSON.stringify(memo));
    // Without --verify the cache's own records are trusted (docs/ARCHITECTURE.md, rule 7).
    expect((await path("kernel")).stdout.trim()).toBe(initrd);
    expect(readFileSync((await path("kernel", ["--verify"])).stdout.trim())).toEqual(kernelBytes());
    expect((await ocicache(["verify"])).code).toBe(0);
    expect(readdirSync(join(cacheDir, "refs"))).toEqual([]);
    expect(readFileSync((await path("kernel")).stdout.trim())).toEqual(kernelBytes());
  });
});

describe("--verify distrusts every record of the cache directory", () => {
  test("a planted outputs/ record for a replaced -o file does not beat pull -o --verify (finding 2)", async () => {
    const out = join(dir, "out");
    expect((await ocicache(["pull", image.ref, "-o", out])).code).toBe(0);
    const kernelOut = join(out, "kernel");
    const wanted = readFileSync(kernelOut);
    // Someone who can write the cache swaps the kernel for bytes of the same size and rewrites its record to match.
    rmSync(kernelOut);
    writeFileSync(kernelOut, Buffer.alloc(wanted.length, 0x41));
    const records = readdirSync(join(cacheDir, "outputs")).map((name) => join(cacheDir, "outputs", name));
    const record = records.find((file) => JSON.parse(readFileSync(file, "utf8")).path === kernelOut)!;
    const stat = statSync(kernelOut);
    const planted = { ...JSON.parse(readFileSync(record, "utf8")), ...pick(stat, "dev", "ino", "mtimeMs", "ctimeMs") };
    writeFileSync(record, JSON.stringify(planted));
    const trusted = await ocicache(["pull", image.ref, "-o", out]);
    expect(trusted.code).toBe(0);
    const verified = await ocicache(["pull", image.ref, "-o", out, "--verify"]);
    expect(verified.code).toBe(0);
    expect(readFileSync(kernelOut)).toEqual(wanted);
  });

  test("a planted refs/ memo entry naming another cached image loses to --verify --offline (finding 3)", async () => {
    const other = await pushSampleImage(registry.url, `hostile-cache-${run}/app`, `other-${Math.random()}`, {
      format: "kraftkit",
      kernelBytes: 1000,
      initrdBytes: 1000,
    });
    expect((await ocicache(["path", image.ref, "--role", "kernel"])).code).toBe(0);
    expect((await ocicache(["path", other.ref, "--role", "kernel"])).code).toBe(0);
    // Its memo made again from the index.json there is now, so that it names that file's identity.
    expect((await ocicache(["path", image.ref, "--role", "kernel", "--offline"])).code).toBe(0);
    const memos = readdirSync(join(cacheDir, "refs")).map((name) => join(cacheDir, "refs", name));
    const file = memos.find((f) => JSON.parse(readFileSync(f, "utf8")).name === image.ref)!;
    const memo = JSON.parse(readFileSync(file, "utf8"));
    memo.entry.digest = other.indexDigest;
    delete memo.images;
    writeFileSync(file, JSON.stringify(memo));
    const verified = await ocicache(["path", image.ref, "--role", "kernel", "--verify", "--offline"]);
    expect(verified.code).toBe(0);
    expect(readFileSync(verified.stdout.trim())).toEqual(Buffer.from(image.manifests[host].files.kernel));
    const index = JSON.parse(readFileSync(join(cacheDir, "index.json"), "utf8")) as {
      manifests: Array<{ digest: string; annotations: Record<string, string> }>;
    };
    const entry = index.manifests.find((m) => m.annotations["org.opencontainers.image.ref.name"] === image.ref);
    expect(entry!.digest).toBe(image.indexDigest);
    expect((await ocicache(["verify"])).code).toBe(0);
  });
});

function pick<T extends object, K extends keyof T>(value: T, ...keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((key) => [key, value[key]])) as Pick<T, K>;
}
