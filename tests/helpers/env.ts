/**
 * What every test file needs: the platform of this machine as the sample
 * images name it, a run id (test files share one registry), and a temp
 * directory per test that is removed after it.
 *
 * @module
 */

import { afterEach, beforeEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** This machine's architecture, as the sample images' platforms name it. */
export const HOST_ARCH: "amd64" | "arm64" = process.arch === "arm64" ? "arm64" : "amd64";

/** A random id of this run, so that test files pushing to the shared registry use repositories of their own. */
export const RUN_ID = Math.random().toString(36).slice(2, 8);

/** Whether this process may mount a tmpfs (root), for the tests of read-only and full caches. */
export const CAN_MOUNT = process.getuid?.() === 0;

/** A fresh directory for each test of the file (or `describe`) that calls this, removed after the test. */
export function useTempDir(prefix: string): { readonly path: string } {
  const current = { path: "" };
  beforeEach(() => {
    current.path = mkdtempSync(join(tmpdir(), `ocicache-${prefix}-`));
  });
  afterEach(() => rmSync(current.path, { recursive: true, force: true }));
  return current;
}
