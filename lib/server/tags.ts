/**
 * The mirror's lists (distribution spec, "Listing Tags"; and the catalog
 * extension): a repository's tags from the upstream, remembered for when it
 * is down, or else the tags the cache holds; the repositories the cache
 * holds. Both in lexical order, paginated with `n` and `last` and a `Link`
 * header to the next page.
 *
 * @module
 */

import { NotFoundError, RegistryError } from "../errors.ts";
import { MAX_TAGS } from "../oci/limits.ts";
import { REF_NAME_ANNOTATION } from "../oci/names.ts";
import type { Reference } from "../oci/reference.ts";
import type { Cache } from "../pull/cache.ts";
import { cachedTags, readIndex } from "../store/index-file.ts";

/** One page of a sorted list. */
export interface ListPage {
  items: string[];
  /** The query of the next page (`n=…&last=…`), when there is one. */
  next?: string;
}

/**
 * A page of `items` after `last`, at most `n` long (the spec's pagination).
 *
 * @example Pages of three tags
 * ```ts
 * import assert from "node:assert";
 * import { paginate } from "./tags.ts";
 * assert.deepEqual(paginate(["c", "a", "b"], "2", undefined), { items: ["a", "b"], next: "n=2&last=b" });
 * assert.deepEqual(paginate(["c", "a", "b"], "2", "b"), { items: ["c"] });
 * ```
 */
export function paginate(items: string[], n: string | undefined, last: string | undefined): ListPage {
  const sorted = [...new Set(items)].sort();
  const after = last === undefined ? sorted : sorted.filter((item) => item > last);
  const limit = n === undefined || !/^\d{1,6}$/.test(n) ? after.length : Number(n);
  const items_ = after.slice(0, limit);
  const more = items_.length < after.length && items_.length > 0;
  return { items: items_, ...(more && { next: `n=${limit}&last=${encodeURIComponent(items_.at(-1)!)}` }) };
}

/**
 * The tags of one repository the upstream last listed, per repository, for when it cannot be asked: at most
 * `limit` tags of all repositories together, the repositories listed longest ago forgotten first (any client may
 * ask for the tags of any name).
 */
export class TagMemory {
  readonly #tags = new Map<string, string[]>();
  readonly #limit: number;
  #count = 0;

  constructor(limit = MAX_TAGS) {
    this.#limit = limit;
  }

  /** How many tags it holds, of all repositories. */
  get size(): number {
    return this.#count;
  }

  /**
   * The upstream's tags of `ref`'s repository; when it cannot be reached (or
   * the cache is offline), the tags it listed last and those the cache holds.
   *
   * @throws {NotFoundError} when neither the upstream nor the cache knows the repository.
   */
  async list(cache: Cache, ref: Reference, upstream: string): Promise<string[]> {
    const known = () => [
      ...(this.#tags.get(ref.repository) ?? []),
      ...cachedTags(cache.store.root, upstream, ref.repository),
    ];
    if (cache.options.offline) return orNotFound(known(), ref);
    try {
      const tags = await (await cache.client()).listTags(ref);
      this.#remember(ref.repository, tags);
      return tags;
    } catch (error) {
      if (!(error instanceof RegistryError)) throw error;
      return orNotFound(known(), ref, error);
    }
  }

  #remember(repository: string, tags: string[]): void {
    this.#forget(repository);
    if (tags.length > this.#limit) return;
    for (const [oldest] of this.#tags) {
      if (this.#count + tags.length <= this.#limit) break;
      this.#forget(oldest);
    }
    this.#tags.set(repository, tags);
    this.#count += tags.length;
  }

  #forget(repository: string): void {
    this.#count -= this.#tags.get(repository)?.length ?? 0;
    this.#tags.delete(repository);
  }
}

/** The repositories of `upstream` that the cache holds references of. */
export function cachedRepositories(cache: Cache, upstream: string): string[] {
  const prefix = `${upstream}/`;
  return readIndex(cache.store.root).flatMap((entry) => {
    const name = entry.annotations[REF_NAME_ANNOTATION] ?? "";
    if (!name.startsWith(prefix)) return [];
    return [name.slice(prefix.length).replace(/[:@].*$/, "")];
  });
}

function orNotFound(tags: string[], ref: Reference, cause?: unknown): string[] {
  if (tags.length > 0) return tags;
  throw new NotFoundError(`Cannot list the tags of "${ref.repository}": the cache holds none`, { cause });
}
