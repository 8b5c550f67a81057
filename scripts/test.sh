#!/usr/bin/env bash
# Sets up a fresh machine (idempotent) and runs every test: formatting and lints, native unit and
# contract tests (worker core, storage service, provider fakes, the stack against real PostgreSQL
# and PostgREST), WebAssembly tests under Node, the bundle-size report, and the end-to-end suite
# against `wrangler dev` (with the playground page clicked through in a headless Chromium), and a
# short schema-driven fuzzing run (scripts/fuzz.sh). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
step() { echo; echo "=== $* ==="; local s=$SECONDS; "$@"; echo "=== done in $((SECONDS - s))s: $* ==="; }

step cargo fmt --all --check
step cargo clippy --workspace --all-targets --locked -- -D warnings
step cargo clippy -p makeit3d-bff --target wasm32-unknown-unknown --all-targets --locked -- -D warnings
step cargo test --workspace --exclude e2e --locked
step cargo test -p makeit3d-bff --target wasm32-unknown-unknown --locked
step bash scripts/bundle-size.sh
step "$NODE22" node_modules/typescript/bin/tsc -p docs/examples
step "$NODE22" node_modules/typescript/bin/tsc -p playground
step cargo test -p e2e --locked
# Schema-driven fuzzing, short (≈ 850 requests, about a minute); `bash scripts/fuzz.sh` runs ≥ 5,000.
step env FUZZ_MAX_EXAMPLES=25 bash scripts/fuzz.sh
echo; echo "all tests passed"
