#!/usr/bin/env bash
# Sets up a fresh machine (idempotent) and runs every test: formatting and lints (clippy::pedantic,
# native and wasm32), the core crate's purity (`cargo tree`) and the worker's module graph (no
# import cycle), native unit and contract tests (the core crate, storage service, provider fakes,
# the stack against real PostgreSQL and PostgREST), WebAssembly tests under Node, the bundle-size
# report, and the end-to-end suite against `wrangler dev` (with the playground page clicked
# through in a headless Chromium), and a short schema-driven fuzzing run (scripts/fuzz.sh). Exits
# non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
step() { echo; echo "=== $* ==="; local s=$SECONDS; "$@"; echo "=== done in $((SECONDS - s))s: $* ==="; }

# The core crate (src/core/) stays pure: nothing of the Workers runtime in its dependency tree.
core_is_pure() {
  local tree
  tree=$(cargo tree -p makeit3d-core --locked -e normal,build --prefix none --format '{p}' | sed 's/ (\*)$//')
  if grep -E '^(worker|worker-[a-z-]+|wasm-bindgen[a-z-]*|web-sys|js-sys) ' <<<"$tree"; then
    echo "makeit3d-core depends on the runtime (above): keep it pure" >&2
    return 1
  fi
  echo "makeit3d-core: $(sort -u <<<"$tree" | wc -l) crates in its tree, none of the runtime"
}

step cargo fmt --all --check
step cargo clippy --workspace --all-targets --locked -- -D warnings
step cargo clippy -p makeit3d-bff -p bench-floor --target wasm32-unknown-unknown --all-targets --locked -- -D warnings
step core_is_pure
step python3 scripts/module-graph.py
step cargo test --workspace --exclude e2e --locked
step cargo test -p makeit3d-bff --target wasm32-unknown-unknown --locked
step bash scripts/bundle-size.sh
step "$NODE22" node_modules/typescript/bin/tsc -p docs/examples
step "$NODE22" node_modules/typescript/bin/tsc -p playground
step cargo test -p e2e --locked
# Schema-driven fuzzing, short (≈ 850 requests, about a minute); `bash scripts/fuzz.sh` runs ≥ 5,000.
step env FUZZ_MAX_EXAMPLES=25 bash scripts/fuzz.sh
echo; echo "all tests passed"
