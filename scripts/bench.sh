#!/usr/bin/env bash
# Benchmarks (not part of scripts/test.sh): the bundle size, then one local stack and the RELEASE
# build of the worker under `wrangler dev`, driven by wrk and tests/bench. Prints one table and
# writes it as JSON to target/bench/results.json. Settings: BENCH_* variables (see
# tests/bench/src/cfg.rs), e.g. BENCH_ONLY=submit,status BENCH_RUNS=1.
# Exit status: 0 all acceptance checks passed (or were skipped), 1 one failed, 2 the bench broke.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
source scripts/env.sh

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq wrk >/dev/null
fi

mkdir -p target/bench
echo "=== bundle size (release, wrangler deploy --dry-run) ==="
bash scripts/bundle-size.sh 2>&1 | tee target/bench/bundle.txt

echo "=== building the floor worker (tests/bench/floor, release, as wrangler dev will) ==="
# Built here so its first build (the worker crate's dependencies in release) counts as a build,
# not as the floor scenario's time; wrangler dev's own build is then a no-op plus wasm-opt.
if [ -z "${BENCH_ONLY:-}" ] || [[ ",${BENCH_ONLY}," == *",floor,"* ]]; then
  (cd tests/bench/floor && worker-build --release >/dev/null)
  floor_wasm=tests/bench/floor/build/index_bg.wasm
  echo "floor: wasm raw $(stat -c %s "$floor_wasm") bytes, gzip -9 $(gzip -9c "$floor_wasm" | wc -c) bytes" \
    | tee target/bench/floor-bundle.txt
fi

echo "=== building the bench driver ==="
# The workspace's release profile is tuned for the WebAssembly bundle (LTO, one codegen unit,
# size); the native driver (which also runs the in-process fakes and storage) needs speed, not size.
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=2 \
  cargo build -p bench --release --locked

# What is left of a 19-minute budget goes to the scenarios (extra runs of the slow ones are
# skipped, and say so, when they would not fit).
used=$((SECONDS - start))
export BENCH_BUDGET_S="${BENCH_BUDGET_S:-$(( used < 840 ? 1140 - used : 300 ))}"
export BENCH_BUNDLE_FILE="$PWD/target/bench/bundle.txt"
echo "=== running the scenarios (budget ${BENCH_BUDGET_S}s; setup and builds took ${used}s) ==="
status=0
target/release/bench "$@" || status=$?
echo "bench: total $((SECONDS - start)) s (setup and builds ${used} s)"
exit "$status"
