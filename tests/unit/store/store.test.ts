import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SizeMismatchError } from "../../../lib/errors.ts";
import { digestOf } from "../../../lib/oci/digest.ts";
import { cachePaths, tempPath } from "../../../lib/store/paths.ts";
import { OCI_LAYOUT, Store } from "../../../lib/store/store.ts";
import { BlobWriter } from "../../../lib/store/writer.ts";
import { CAN_MOUNT } from "../../helpers/env.ts";
import { mountTmpfs } from "../../helpers/mount.ts";

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "ocicache-store-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const bytes = new TextEncoder().encode("initrd content");
const expected = { digest: digestOf(bytes), size: bytes.length };

describe("Store", () => {
  test("init() lays out an OCI image layout", () => {
    expect(new Store(root).init()).toBeUndefined();
    expect(readFileSync(join(root, "oci-layout"), "utf8")).toBe(OCI_LAYOUT);
    expect(statSync(join(root, "blobs", "sha256")).isDirectory()).toBe(true);
    expect(statSync(join(root, "tmp")).isDirectory()).toBe(true);
  });

  test("putBytes() commits a read-only blob by rename and leaves tmp/ empty", () => {
    const store = new Store(root);
    store.init();
    const result = store.putBytes(expected, bytes);
    expect(result).toEqual({
      status: "committed",
      path: store.blobPath(expected.digest),
      digest: expected.digest,
      size: bytes.length,
    });
    expect(readFileSync(store.blobPath(expected.digest))).toEqual(Buffer.from(bytes));
    expect(statSync(store.blobPath(expected.digest)).mode & 0o777).toBe(0o444);
    expect(readdirSync(store.tmpDir)).toEqual([]);
  });

  test("a writer with fewer bytes than expected fails its commit and leaves nothing in blobs/", () => {
    const store = new Store(root);
    store.init();
    const writer = BlobWriter.create(tempPath(root, "short"));
    writer.write(bytes.subarray(2));
    const result = writer.commit(store.blobPath(expected.digest), expected);
    expect(result.status === "failed" && result.error).toBeInstanceOf(SizeMismatchError);
    writer.abort();
    expect(store.stat(expected.digest)).toBeUndefined();
    expect(readdirSync(store.tmpDir)).toEqual([]);
  });

  test("an aborted writer leaves no file behind", () => {
    const store = new Store(root);
    store.init();
    const writer = BlobWriter.create(tempPath(root, "aborted"));
    writer.write(bytes);
    writer.abort();
    expect(existsSync(store.blobPath(expected.digest))).toBe(false);
    expect(readdirSync(store.tmpDir)).toEqual([]);
  });

  test("touch() records the use on a marker, never on the blob, at most once a minute", () => {
    const store = new Store(root);
    store.init();
    store.putBytes(expected, bytes);
    utimesSync(store.blobPath(expected.digest), new Date(0), new Date(0));
    store.touch(expected.digest);
    expect(statSync(store.blobPath(expected.digest)).mtimeMs).toBe(0);
    expect(Date.now() - store.usage(expected.digest)!.lastUseMs).toBeLessThan(60_000);
    const marker = cachePaths(root).use(expected.digest);
    const recent = new Date(Date.now() - 30_000);
    utimesSync(marker, recent, recent);
    store.touch(expected.digest);
    expect(statSync(marker).mtimeMs).toBe(recent.getTime());
    const old = new Date(Date.now() - 120_000);
    utimesSync(marker, old, old);
    store.touch(expected.digest);
    expect(Date.now() - statSync(marker).mtimeMs).toBeLessThan(60_000);
  });

  test("a link planted as a use marker is replaced, its target untouched; a uses/ link distrusts the cache", () => {
    const store = new Store(root);
    store.init();
    store.putBytes(expected, bytes);
    const outside = join(root, "outside");
    writeFileSync(outside, "precious");
    utimesSync(outside, new Date(0), new Date(0));
    symlinkSync(outside, cachePaths(root).use(expected.digest));
    store.touch(expected.digest);
    expect(statSync(outside).mtimeMs).toBe(0);
    expect(lstatSync(cachePaths(root).use(expected.digest)).isFile()).toBe(true);
    rmSync(join(root, "uses"), { recursive: true });
    symlinkSync(join(root, "tmp"), join(root, "uses"));
    const planted = new Store(root);
    expect(planted.init()).toBe("its uses/ is a symbolic link; the cache is not used");
    expect(planted.stat(expected.digest)).toBeUndefined();
  });

  test("putRange() stores a slice as a blob named by its digest", () => {
    const store = new Store(root);
    store.init();
    store.putBytes(expected, bytes);
    const result = store.putRange(store.blobPath(expected.digest), 2, 5);
    expect(result.status === "committed" && result.digest).toBe(digestOf(bytes.subarray(2, 7)));
  });

  test.skipIf(!CAN_MOUNT)(
    "a read-only file system is reported, not thrown, and putBytes() says skipped (mounts a tmpfs: root only)",
    () => {
      const fs = mountTmpfs(1024 * 1024);
      try {
        new Store(fs.dir).init();
        fs.readOnly();
        const store = new Store(fs.dir);
        expect(store.init()).toBeUndefined();
        const result = store.putBytes(expected, bytes);
        expect(result).toEqual({ status: "skipped", reason: "read-only file system" });
        expect(store.stat(expected.digest)).toBeUndefined();
      } finally {
        fs.unmount();
      }
    },
  );

  test.skipIf(!CAN_MOUNT)(
    "a full file system fails the write and leaves tmp/ empty (mounts a tmpfs: root only)",
    () => {
      const fs = mountTmpfs(64 * 1024);
      try {
        const store = new Store(fs.dir);
        store.init();
        const big = new Uint8Array(256 * 1024);
        const result = store.putBytes({ digest: digestOf(big), size: big.length }, big);
        expect(result.status).toBe("failed");
        expect(result.status === "failed" && (result.error as NodeJS.ErrnoException).code).toBe("ENOSPC");
        expect(readdirSync(store.tmpDir)).toEqual([]);
      } finally {
        fs.unmount();
      }
    },
  );
});
