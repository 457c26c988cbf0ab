#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, then scripts/demo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec bun scripts/demo.ts
