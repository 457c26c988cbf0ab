/**
 * The mirror's answers in the distribution spec's formats: the API version
 * header, list pages with their `Link`, and errors as `{errors: [{code, message}]}`.
 *
 * @module
 */

import type { Context } from "hono";
import { AuthError, IntegrityError, NotFoundError, PolicyError, UsageError } from "../errors.ts";
import type { ListPage } from "./tags.ts";

/** The header every answer of the registry API carries. */
export const API_HEADER = { "Docker-Distribution-API-Version": "registry/2.0" };

/** A list page, with `Link: <…?n=…&last=…>; rel="next"` when there are more. */
export function listResponse(c: Context, path: string, body: object, page: ListPage): Response {
  const headers: Record<string, string> = { ...API_HEADER };
  if (page.next !== undefined) headers.Link = `<${path}?${page.next}>; rel="next"`;
  return c.json(body, 200, headers);
}

/** An error in the distribution spec's JSON format. */
export function registryError(
  c: Context,
  status: 400 | 403 | 404 | 405 | 416 | 500 | 502 | 503,
  code: string,
  message: string,
): Response {
  return c.json({ errors: [{ code, message }] }, status, API_HEADER);
}

export function mirrorError(c: Context, error: unknown, kind: "manifests" | "blobs" | "tags"): Response {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof NotFoundError)
    return registryError(
      c,
      404,
      kind === "manifests" ? "MANIFEST_UNKNOWN" : kind === "tags" ? "NAME_UNKNOWN" : "BLOB_UNKNOWN",
      message,
    );
  if (error instanceof UsageError) return registryError(c, 400, "NAME_INVALID", message);
  if (error instanceof PolicyError) return registryError(c, 403, "DENIED", message);
  if (error instanceof AuthError) return registryError(c, 502, "UNAUTHORIZED", message);
  if (error instanceof IntegrityError)
    return registryError(c, 502, kind === "manifests" ? "MANIFEST_INVALID" : "BLOB_UNKNOWN", message);
  return registryError(c, 503, "UNAVAILABLE", message);
}
