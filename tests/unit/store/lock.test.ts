import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StoreError } from "../../../lib/errors.ts";
import { acquireLock, isStale, LOCK_SILENCE_MS, tryLock } from "../../../lib/store/lock.ts";
import { useTempDir } from "../../helpers/env.ts";

const tmp = useTempDir("lock");
const path = () => join(tmp.path, "blob.lock");

describe("tryLock()", () => {
  test("takes a free lock, writes its owner's pid, and release removes it", () => {
    const lock = tryLock(path())!;
    expect(readFileSync(path(), "utf8").split(" ")[0]).toBe(String(process.pid));
    lock.release();
    expect(existsSync(path())).toBe(false);
  });

  test("a lock held by a live process is not taken", () => {
    const lock = tryLock(path())!;
    try {
      expect(tryLock(path())).toBeUndefined();
    } finally {
      lock.release();
    }
  });

  test("a lock whose owner is dead is taken over", () => {
    writeFileSync(path(), "999999999 0 dead");
    expect(isStale(path())).toBe(true);
    const lock = tryLock(path());
    expect(lock).toBeDefined();
    lock!.release();
  });

  test("a lock naming a live pid that was not refreshed for the silence limit is taken over", () => {
    writeFileSync(path(), `1 ${Date.now()} planted`);
    expect(isStale(path())).toBe(false);
    const old = new Date(Date.now() - LOCK_SILENCE_MS - 1000);
    utimesSync(path(), old, old);
    expect(isStale(path())).toBe(true);
    const lock = tryLock(path());
    expect(lock).toBeDefined();
    lock!.release();
  });

  test("a link planted as the lock is never written through: it is replaced, its target untouched", () => {
    const target = join(tmp.path, "target");
    writeFileSync(target, "keep");
    symlinkSync(target, path());
    const lock = tryLock(path())!;
    expect(lock).toBeDefined();
    expect(lstatSync(path()).isFile()).toBe(true);
    expect(readFileSync(target, "utf8")).toBe("keep");
    lock.release();
  });

  test("a held lock's mtime is refreshed while it is held", async () => {
    const lock = tryLock(path())!;
    try {
      const old = new Date(Date.now() - 60_000);
      utimesSync(path(), old, old);
      await Bun.sleep(1_300);
      expect(Date.now() - lstatSync(path()).mtimeMs).toBeLessThan(2_000);
    } finally {
      lock.release();
    }
  });
});

describe("acquireLock()", () => {
  test("waits for the holder, and fails with a store error naming the owner past its timeout", async () => {
    const held = tryLock(path())!;
    try {
      const error = await acquireLock(path(), { timeoutMs: 50 }).catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toContain(`pid ${process.pid}`);
    } finally {
      held.release();
    }
    const lock = await acquireLock(path(), { timeoutMs: 50 });
    lock.release();
  });
});
