#!/usr/bin/env bash
# Builds the release bundle with `wrangler deploy --dry-run` (offline) and prints its size:
# the WebAssembly raw and gzip, and wrangler's own upload figures. Fails above 500 KiB gzip of
# the WebAssembly (P13: a small module keeps cold starts short), so the test command catches growth.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p build
out=$(mktemp -d)
if ! wrangler deploy --dry-run --outdir "$out" > build/dry-run.log 2>&1; then
  cat build/dry-run.log >&2
  exit 1
fi
grep -E 'Total Upload' build/dry-run.log
wasm=$(ls "$out"/*.wasm 2>/dev/null | head -1)
[ -n "$wasm" ] || wasm=build/index_bg.wasm
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "bundle: wasm raw ${raw} bytes, gzip -9 ${gz} bytes ($(( gz / 1024 )) KiB)"
rm -rf "$out"
if [ "$gz" -gt 512000 ]; then
  echo "bundle: over the 500 KiB gzip budget (P13)" >&2
  exit 1
fi
