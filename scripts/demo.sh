#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, start a real
# registry on 127.0.0.1, push a unikraft-style image into it, pull it twice
# with ocicache (a miss, then a hit, each timed), stop the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/registry.sh

port=5000
if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then port=$(free_port); fi
work=$(mktemp -d /tmp/ocicache-demo.XXXXXX)
cleanup() { stop_registry; rm -rf "$work"; }
trap cleanup EXIT
start_registry "$port"
echo "demo: registry on 127.0.0.1:$port"

ref=$(bun scripts/push-sample.ts "http://127.0.0.1:$port" unikraft/nginx 1.25 spec 4 32)
echo "demo: pushed $ref (kernel 4 MiB and initrd 32 MiB in a tar layer, one ROM; x86_64 and arm64)"

export OCICACHE_DIR="$work/cache"
ms() { echo $(( $(date +%s%N) / 1000000 )); }

t0=$(ms)
bun mod.ts pull "$ref" -o "$work/run1"
t1=$(ms)
echo "demo: first pull (miss, from the registry): $((t1 - t0)) ms"

bun mod.ts pull "$ref" -o "$work/run2"
t2=$(ms)
echo "demo: second pull (hit, from the cache; the tag re-checked with one HEAD): $((t2 - t1)) ms"

digest=$(bun mod.ts pull "$ref" --json -o "$work/run3" | bun -e 'console.log(JSON.parse(await Bun.stdin.text()).digest)')
kernel=$(bun mod.ts path "127.0.0.1:$port/unikraft/nginx@$digest" --role kernel)
t3=$(ms)
bun mod.ts path "127.0.0.1:$port/unikraft/nginx@$digest" --role kernel >/dev/null
t4=$(ms)
echo "demo: path of the digest-pinned kernel (no network): $kernel in $((t4 - t3)) ms"

cmp "$work/run1/kernel" "$work/run2/kernel" && cmp "$work/run1/initrd" "$work/run2/initrd" && cmp "$kernel" "$work/run2/kernel"
echo "demo: both pulls wrote the same bytes; cache: $(du -sh "$OCICACHE_DIR" | cut -f1) in $OCICACHE_DIR"
