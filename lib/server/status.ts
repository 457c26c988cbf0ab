/**
 * The status page at `/`: the admin endpoint made visible. Server-rendered
 * with Hono's `html` helper (every value escaped), one inline style, no
 * script and nothing from another host; it refreshes itself every 5 s.
 *
 * @module
 */

import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { CacheStats, ReferenceRow } from "../store/report.ts";
import { formatBytes } from "../units.ts";
import type { Metrics } from "./metrics.ts";

/** What the page shows. */
export interface StatusData {
  stats: CacheStats;
  references: ReferenceRow[];
  metrics: Metrics;
  /** The registry the mirror pulls through, if it mirrors one. */
  upstream?: string;
  now: number;
}

/** A digest in a path, shown by its first 12 hex digits. */
const DIGEST_RE = /sha256:([a-f0-9]{12})[a-f0-9]{52}/g;

/** References listed at most, the largest first. */
const MAX_ROWS = 20;

/**
 * The page.
 *
 * @example Render an empty cache's page
 * ```ts
 * import assert from "node:assert";
 * import { Metrics } from "./metrics.ts";
 * import { renderStatus } from "./status.ts";
 * const stats = { cacheDir: "/c", referenceCount: 0, blobCount: 0, bytes: 0, derivedBytes: 0, oldestUseAt: null,
 *   newestUseAt: null, maxSizeBytes: 1024, overMaxSizeBytes: 0, maxAgeSeconds: 0, overMaxAgeBytes: 0 };
 * const page = String(await renderStatus({ stats, references: [], metrics: new Metrics(), now: Date.now() }));
 * assert.match(page, /0 B of 1\.0 KiB/);
 * ```
 */
export function renderStatus(data: StatusData): HtmlEscapedString | Promise<HtmlEscapedString> {
  const { stats, metrics } = data;
  const used = stats.maxSizeBytes > 0 ? Math.min(100, (stats.bytes / stats.maxSizeBytes) * 100) : 0;
  const served = metrics.hits + metrics.misses;
  const ratio = served === 0 ? "–" : `${((metrics.hits / served) * 100).toFixed(0)} %`;
  const rows = [...data.references].sort((a, b) => b.bytes - a.bytes).slice(0, MAX_ROWS);
  const upstream = metrics.lastUpstreamError;
  const stale = metrics.lastStaleTag;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>ocicache</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 15px; margin-top: 1.6em; }
.bar { width: 480px; height: 14px; background: #e4e4e4; border-radius: 3px; }
.fill { height: 14px; background: #3a7; border-radius: 3px; }
table { border-collapse: collapse; } td, th { padding: 2px 12px 2px 0; text-align: left; }
td.n, th.n { text-align: right; } .muted { color: #777; }
</style>
</head>
<body>
<h1>ocicache</h1>
<p class="muted">${stats.cacheDir}${data.upstream === undefined ? "" : html` · mirroring ${data.upstream}`}</p>
<h2>Cache</h2>
<div class="bar"><div class="fill" style="width: ${used.toFixed(1)}%"></div></div>
<p id="size">${formatBytes(stats.bytes)} of ${formatBytes(stats.maxSizeBytes)} ·
<span id="derived">${formatBytes(stats.derivedBytes)}</span> derived (taken out of layers, made again when needed) ·
<span id="references">${stats.referenceCount}</span> references · <span id="blobs">${stats.blobCount}</span> blobs</p>
<h2>Traffic</h2>
<p>hit ratio <span id="hit-ratio">${ratio}</span> (${metrics.hits} hits, ${metrics.misses} misses) ·
saved <span id="saved">${formatBytes(metrics.bytesServedFromCache)}</span> sent from the cache ·
fetched ${formatBytes(metrics.bytesFetched)}</p>
<p>downloads <span id="downloads">${metrics.downloadsInFlight}</span> in progress, ${metrics.downloadsQueued} queued ·
${metrics.blobStreams} blob responses following them</p>
<p>upstream: <span id="upstream">${
    upstream === undefined || data.now - upstream.at > 60_000
      ? "no errors in the last minute"
      : `${upstream.kind} error ${Math.round((data.now - upstream.at) / 1000)} s ago`
  }</span></p>
<p>tags answered from their last known digest, the upstream down: <span id="stale-tags">${metrics.staleTags}</span>${
    stale === undefined ? "" : html` (the last: ${stale.name}, ${ago(data.now, new Date(stale.at).toISOString())})`
  }</p>
<h2>References, the largest first</h2>
<table>
<tr><th>reference</th><th class="n">size</th><th>last use</th></tr>
${rows.map((r) => {
  const cells = html`<td class="n">${formatBytes(r.bytes)}</td><td>${ago(data.now, r.lastUsedAt)}</td>`;
  return html`<tr><td>${r.reference}</td>${cells}</tr>`;
})}
</table>
<h2>Recent requests</h2>
<table>
<tr><th>method</th><th>path</th><th class="n">status</th><th class="n">ms</th></tr>
${metrics.recent.map((r) => {
  const cells = html`<td class="n">${r.status}</td><td class="n">${r.ms.toFixed(0)}</td>`;
  return html`<tr><td>${r.method}</td><td>${r.path.replace(DIGEST_RE, "sha256:$1…")}</td>${cells}</tr>`;
})}
</table>
</body>
</html>`;
}

function ago(now: number, iso: string): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}
