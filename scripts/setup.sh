#!/usr/bin/env bash
# Installs what ocicache, its tests and its demo need on a fresh Debian machine
# with Node.js and npm: Bun (pinned, from the npm registry), the dependencies,
# and Debian's docker-registry, skopeo, containerd, podman, chromium (headless,
# for the status page), GNU make (the makefile recipe), apache2-utils (htpasswd),
# openssl, gzip and zstd (compressed layers made by the tests), zsh and fish
# (the completion scripts), xfsprogs (an XFS, where files clone).
# Sourced by demo.sh, test.sh and bench; safe to run again.
set -euo pipefail

BUN_VERSION=1.4.5
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ "$(bun --version 2>/dev/null || true)" != "$BUN_VERSION" ]; then
  echo "setup: installing bun@$BUN_VERSION from the npm registry" >&2
  npm install -g --no-fund --no-audit "bun@$BUN_VERSION" >&2
fi

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v tar >/dev/null || missing+=(tar)
command -v /usr/bin/time >/dev/null || missing+=(time)
command -v containerd >/dev/null || missing+=(containerd)
command -v chromium >/dev/null || missing+=(chromium)
command -v podman >/dev/null || missing+=(podman)
command -v make >/dev/null || missing+=(make)
command -v zstd >/dev/null || missing+=(zstd)
command -v gzip >/dev/null || missing+=(gzip)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

(cd "$root" && bun install --frozen-lockfile >&2)
