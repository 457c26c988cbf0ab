import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestHex, digestOf, type Digest } from "../../../lib/oci/digest.ts";
import { updateIndex, upsertEntry, type IndexEntry } from "../../../lib/store/index-file.ts";
import { lookupEntry, removeStaleMemos } from "../../../lib/store/lookup.ts";
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
