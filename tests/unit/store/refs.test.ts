import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Digest, digestHex, digestOf } from "../../../lib/oci/digest.ts";
import { type IndexEntry, updateIndex, upsertEntry } from "../../../lib/store/index-file.ts";
import {
  lookupEntry,
  lookupReference,
  type PullMemo,
  readPullMemo,
  removeAllMemos,
  removeStaleMemos,
  writePullMemo,
} from "../../../lib/store/refs.ts";
import { Store } from "../../../lib/store/store.ts";
import { useTempDir } from "../../helpers/env.ts";

const tmp = useTempDir("lookup");
const NAME = "registry.example/app:1";

function entry(name: string, n: number): IndexEntry {
  return {
    mediaType: "application/vnd.oci.image.index.v1+json",
    digest: `sha256:${String(n).repeat(64).slice(0, 64)}` as Digest,
    size: n,
    annotations: { "org.opencontainers.image.ref.name": name },
  };
}

function store(): Store {
  const s = new Store(join(tmp.path, "cache"));
  s.init();
  return s;
}

/** What the memo of `name` remembers for `digest` and `choice`, as a pull finds it. */
const remembered = (s: Store, name: string, digest: Digest, choice: string) =>
  readPullMemo(lookupReference(s, name), digest, choice);

const memo = (s: Store, name: string) => join(s.paths.refsDir, digestHex(digestOf(name)));

describe("lookupEntry()", () => {
  test("reads index.json once, then the memo; a rewritten index.json is read again", async () => {
    const s = store();
    await updateIndex(s.root, (entries) => upsertEntry(upsertEntry(entries, entry(NAME, 1)), entry("other:1", 2)));
    expect(lookupEntry(s, NAME)?.digest).toBe(entry(NAME, 1).digest);
    expect(JSON.parse(readFileSync(memo(s, NAME), "utf8")).entry.digest).toBe(entry(NAME, 1).digest);
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 3)));
    expect(lookupEntry(s, NAME)?.digest).toBe(entry(NAME, 3).digest);
    expect(lookupEntry(s, "absent:1")).toBeUndefined();
    expect(JSON.parse(readFileSync(memo(s, "absent:1"), "utf8")).entry).toBeNull();
  });

  test("the memo stands for index.json while it is the same file: a changed memo of this index is used", async () => {
    const s = store();
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 1)));
    lookupEntry(s, NAME);
    const written = JSON.parse(readFileSync(memo(s, NAME), "utf8"));
    // A memo planted under this name's file for another name, or naming another reference, is not used.
    writeFileSync(memo(s, NAME), JSON.stringify({ ...written, name: "other:1" }));
    expect(lookupEntry(s, NAME)?.digest).toBe(entry(NAME, 1).digest);
    writeFileSync(memo(s, NAME), JSON.stringify({ ...written, entry: entry("other:1", 5) }));
    expect(lookupEntry(s, NAME)?.digest).toBe(entry(NAME, 1).digest);
  });

  test("a link planted as a memo is neither read nor written through", async () => {
    const s = store();
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 1)));
    const target = join(tmp.path, "target");
    writeFileSync(target, "precious");
    symlinkSync(target, memo(s, NAME));
    expect(lookupEntry(s, NAME)?.digest).toBe(entry(NAME, 1).digest);
    expect(readFileSync(target, "utf8")).toBe("precious");
  });

  test("removeStaleMemos() keeps the memos of the index.json there is, and removes the rest", async () => {
    const s = store();
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 1)));
    lookupEntry(s, "old:1");
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 2)));
    lookupEntry(s, NAME);
    removeStaleMemos(s);
    expect(readdirSync(s.paths.refsDir)).toEqual([digestHex(digestOf(NAME))]);
  });
});

describe("writePullMemo() and readPullMemo()", () => {
  const digest = (n: number) => entry(NAME, n).digest;
  const image = (n: number): PullMemo => ({
    manifests: [digest(1), digest(n)],
    platform: { os: "linux", architecture: "amd64" },
    blobs: [{ digest: digest(7), size: 7 }],
    files: [{ role: "kernel", name: "kernel", digest: digest(7), size: 7 }],
  });

  test("an image is remembered by choice while the name's entry names the digest, in the same index.json", async () => {
    const s = store();
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 1)));
    writePullMemo(s, NAME, digest(1), "kernel", image(2));
    writePullMemo(s, NAME, digest(1), "initrd", image(3));
    expect(remembered(s, NAME, digest(1), "kernel")).toEqual(image(2));
    expect(remembered(s, NAME, digest(1), "initrd")).toEqual(image(3));
    expect(remembered(s, NAME, digest(1), "rom")).toBeUndefined();
    expect(remembered(s, NAME, digest(4), "kernel")).toBeUndefined();
    expect(remembered(s, "other:1", digest(1), "kernel")).toBeUndefined();
    // Another digest for the name: nothing is remembered for it.
    writePullMemo(s, NAME, digest(5), "kernel", image(5));
    expect(remembered(s, NAME, digest(5), "kernel")).toBeUndefined();
    // index.json rewritten (another pull, rm, verify --repair): what was remembered is forgotten.
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry("other:1", 6)));
    expect(remembered(s, NAME, digest(1), "kernel")).toBeUndefined();
  });

  test("a malformed or foreign remembered image is not used; the most recent choices are kept", async () => {
    const s = store();
    await updateIndex(s.root, (entries) => upsertEntry(entries, entry(NAME, 1)));
    writePullMemo(s, NAME, digest(1), "kernel", image(2));
    const written = JSON.parse(readFileSync(memo(s, NAME), "utf8"));
    const plant = (images: unknown, name = NAME) =>
      writeFileSync(memo(s, NAME), JSON.stringify({ ...written, name, images }));
    plant({
      kernel: { ...image(2), files: [{ role: "kernel", name: "kernel", digest: "sha256:../../etc", size: 1 }] },
    });
    expect(remembered(s, NAME, digest(1), "kernel")).toBeUndefined();
    plant({ kernel: { ...image(2), blobs: [{ digest: digest(7), size: -1 }] } });
    expect(remembered(s, NAME, digest(1), "kernel")).toBeUndefined();
    plant({ kernel: image(2) }, "other:1");
    expect(remembered(s, NAME, digest(1), "kernel")).toBeUndefined();
    // Shapes nothing writes: never used, and never a crash.
    for (const planted of [
      null,
      { ...image(2), files: [null] },
      { ...image(2), platform: null },
      { ...image(2), platform: { os: "linux", evil: "x" } },
      { ...image(2), manifests: [] },
      { ...image(2), files: [{ ...image(2).files[0], name: "kernel\u001b[2J" }] },
      { ...image(2), files: [{ ...image(2).files[0], role: "rom", name: "../rom0" }] },
    ]) {
      plant({ kernel: planted });
      expect(remembered(s, NAME, digest(1), "kernel")).toBeUndefined();
    }
    plant({});
    for (let i = 0; i < 10; i++) writePullMemo(s, NAME, digest(1), `choice ${i}`, image(2));
    expect(Object.keys(JSON.parse(readFileSync(memo(s, NAME), "utf8")).images)).toEqual(
      [2, 3, 4, 5, 6, 7, 8, 9].map((i) => `choice ${i}`),
    );
    removeAllMemos(s);
    expect(readdirSync(s.paths.refsDir)).toEqual([]);
  });
});
