import { describe, expect, test } from "bun:test";
import { lstatSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../../../lib/errors.ts";
import { emptyLock, lockEntry, readLock, writeLock } from "../../../lib/pull/lock.ts";
import { useTempDir } from "../../helpers/env.ts";

const tmp = useTempDir("lock-file");
const digest = `sha256:${"a".repeat(64)}` as never;

describe("writeLock() in a checkout that may be hostile", () => {
  test("a link planted under the old temp name (<lock>.<pid>.tmp) is never written through (finding 4)", () => {
    const victim = join(tmp.path, "victim.txt");
    writeFileSync(victim, "the user's own file\n");
    const path = join(tmp.path, "ocicache.lock");
    symlinkSync(victim, `${path}.${process.pid}.tmp`);
    const lock = emptyLock();
    lock.references["127.0.0.1:5000/unikraft/nginx:1.25"] = lockEntry([{ digest, manifest: digest, files: [] }]);
    writeLock(path, lock);
    expect(readFileSync(victim, "utf8")).toBe("the user's own file\n");
    expect(lstatSync(path).isFile()).toBe(true);
    expect(readLock(path).references["127.0.0.1:5000/unikraft/nginx:1.25"]!.digest).toBe(digest);
    expect(readdirSync(tmp.path).sort()).toEqual(["ocicache.lock", `ocicache.lock.${process.pid}.tmp`, "victim.txt"]);
  });

  test("a lock file that is a link is replaced by a file, its target left alone", () => {
    const victim = join(tmp.path, "victim.txt");
    writeFileSync(victim, "the user's own file\n");
    const path = join(tmp.path, "ocicache.lock");
    symlinkSync(victim, path);
    writeLock(path, emptyLock());
    expect(readFileSync(victim, "utf8")).toBe("the user's own file\n");
    expect(lstatSync(path).isFile()).toBe(true);
  });
});

describe("readLock() of a malformed lock file (finding 6)", () => {
  const name = "127.0.0.1:5000/unikraft/nginx:1.25";
  const file = { role: "kernel", name: "kernel", digest, bytes: 10 };
  const lockWith = (references: unknown) => JSON.stringify({ lockfileVersion: 1, references });
  const entry = (platform: unknown) => ({ digest, platforms: [platform] });
  test.each([
    ["a null file", lockWith({ [name]: entry({ manifest: digest, files: [null] }) }), "has a file with no role"],
    ["a null platform", lockWith({ [name]: entry({ platform: null, manifest: digest, files: [] }) }), '"platform"'],
    [
      "a platform key it never writes",
      lockWith({ [name]: entry({ platform: { cpu: "x" }, manifest: digest, files: [] }) }),
      '"platform"',
    ],
    [
      "a role it does not know",
      lockWith({ [name]: entry({ manifest: digest, files: [{ ...file, role: "boot" }] }) }),
      "no role",
    ],
    [
      "a negative size",
      lockWith({ [name]: entry({ manifest: digest, files: [{ ...file, bytes: -1 }] }) }),
      "byte count",
    ],
    [
      "a __proto__ reference",
      `{"lockfileVersion":1,"references":{"__proto__":{"digest":"${digest}","platforms":[]}}}`,
      '"__proto__"',
    ],
    ["a reference not as ocicache writes it", lockWith({ "nginx:1.25": { digest, platforms: [] } }), '"nginx:1.25"'],
    ["a platform that is a list", lockWith({ [name]: { digest, platforms: [[]] } }), "no manifest digest"],
  ])("%s is a usage error naming it, never a TypeError", (_, text, named) => {
    const path = join(tmp.path, "ocicache.lock");
    writeFileSync(path, text);
    expect(() => readLock(path)).toThrow(UsageError);
    expect(() => readLock(path)).toThrow(named);
  });

  test("a well-formed file with every field passes, and is written back byte for byte", () => {
    const path = join(tmp.path, "ocicache.lock");
    const lock = emptyLock();
    lock.references[name] = {
      digest,
      platforms: [{ platform: { os: "linux", architecture: "amd64" }, manifest: digest, files: [file as never] }],
    };
    writeLock(path, lock);
    const text = readFileSync(path, "utf8");
    writeLock(path, readLock(path));
    expect(readFileSync(path, "utf8")).toBe(text);
  });
});
