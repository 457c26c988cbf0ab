#!/usr/bin/env bash
# The test command: installs what is missing, checks the formatting and the lint, type-checks,
# checks that imports flow down the layers, runs the doc examples, starts a
# real registry on 127.0.0.1, runs the whole bun:test suite against it, stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "test: formatting, lint and sorted imports (biome check) and lines of at most 120 characters"
# Biome's recommended rules, but for noNonNullAssertion: with noUncheckedIndexedAccess, `!` is how the code says an
# index it has just checked is there. A deliberate exception elsewhere carries a biome-ignore comment with its reason.
# No function of lib/ is over 60 lines (biome.json's override).
bun x biome check .
long=$(git ls-files -co --exclude-standard '*.ts' | xargs awk 'length > 120 { print FILENAME ":" FNR }')
if [ -n "$long" ]; then echo "test: lines over 120 characters:" >&2; echo "$long" >&2; exit 1; fi
echo "test: type check (tsc --noEmit)"
bun x tsc --noEmit -p .
echo "test: import directions"
bun scripts/check-imports.ts
echo "test: one door for writes, one for reads"
bun scripts/check-io.ts
echo "test: doc examples"
bun scripts/check-docs.ts
echo "test: bun test"
bun scripts/with-registry.ts -- bun test --timeout 60000 "$@"
