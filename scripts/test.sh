#!/usr/bin/env bash
# The test command: installs what is missing, starts a real registry on
# 127.0.0.1, type-checks, runs the whole bun:test suite, stops the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/registry.sh

port=$(free_port)
trap stop_registry EXIT
start_registry "$port"
export OCICACHE_TEST_REGISTRY="127.0.0.1:$port"

echo "test: type check (tsc --noEmit)"
bun x tsc --noEmit -p .
echo "test: bun test against the registry on $OCICACHE_TEST_REGISTRY"
bun test "$@"
