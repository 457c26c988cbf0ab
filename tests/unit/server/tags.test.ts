import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { NotFoundError } from "../../../lib/errors.ts";
import { parseReference } from "../../../lib/oci/reference.ts";
import { Cache } from "../../../lib/pull/cache.ts";
import { TagMemory } from "../../../lib/server/tags.ts";
import { RUN_ID as run, useTempDir } from "../../helpers/env.ts";
import { pushBlob, pushManifest } from "../../helpers/images.ts";
import { type RegistryHandle, sharedRegistry } from "../../helpers/registry.ts";

const tmp = useTempDir("tags");
let registry: RegistryHandle;
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** Push one small manifest under each of `tags` in `repo`. */
async function tagged(repo: string, tags: string[]): Promise<void> {
  const config = new TextEncoder().encode("{}");
  const digest = await pushBlob(registry.url, repo, config);
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest, size: config.length },
    layers: [],
  });
  for (const tag of tags) await pushManifest(registry.url, repo, tag, MANIFEST, body);
}

beforeAll(async () => {
  registry = await sharedRegistry();
  await tagged(`tags-${run}/a`, ["1", "2"]);
  await tagged(`tags-${run}/b`, ["1", "2", "3"]);
});
afterAll(() => registry.stop());

describe("TagMemory (finding 8)", () => {
  test("remembers at most its limit of tags in all, forgetting the repository listed longest ago", async () => {
    const memory = new TagMemory(3);
    const online = new Cache({ dir: join(tmp.path, "cache") });
    const a = parseReference(`${registry.host}/tags-${run}/a`);
    const b = parseReference(`${registry.host}/tags-${run}/b`);
    expect((await memory.list(online, a, registry.host)).sort()).toEqual(["1", "2"]);
    expect(memory.size).toBe(2);
    expect((await memory.list(online, b, registry.host)).sort()).toEqual(["1", "2", "3"]);
    expect(memory.size).toBe(3);
    const offline = new Cache({ dir: join(tmp.path, "cache"), offline: true });
    expect((await memory.list(offline, b, registry.host)).sort()).toEqual(["1", "2", "3"]);
    expect(await memory.list(offline, a, registry.host).catch((e) => e)).toBeInstanceOf(NotFoundError);
  });

  test("a repository with more tags than the limit is not remembered at all", async () => {
    const memory = new TagMemory(2);
    const online = new Cache({ dir: join(tmp.path, "cache") });
    await memory.list(online, parseReference(`${registry.host}/tags-${run}/b`), registry.host);
    expect(memory.size).toBe(0);
  });
});
