import { describe, expect, test } from "bun:test";
import { lstatSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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
