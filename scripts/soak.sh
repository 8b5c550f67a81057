#!/usr/bin/env bash
# The chaos soak (not part of scripts/test.sh): one local stack and the RELEASE build of the worker
# under `wrangler dev`, 200 mixed steps with ~20 % of the worker's provider, Storage and PostgREST
# calls faulted at random (seeded), wrangler dev SIGKILLed and restarted 3 times, PostgREST stopped
# for 60 s and Storage down for 60 s; then every step must be final, none stuck, no output lost,
# nothing duplicated, rows equal to the Durable Object, Tripo creates bounded. Prints one table and
# writes target/soak/results.json (+ target/soak/worker.log). Fits in 20 minutes on 2 cores.
# Settings: SOAK_* variables (see tests/soak/src/main.rs), e.g. a short run:
#   SOAK_STEPS=20 SOAK_MINUTES=4 SOAK_OUTAGE_S=20 SOAK_SETTLE_S=120 bash scripts/soak.sh
# After the chaos window (SOAK_MINUTES) the chaos stops; every step must then be final within
# SOAK_SETTLE_S (240 s): one still open is stuck.
# Exit status: 0 every check passed, 1 a check failed, 2 the soak broke.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
source scripts/env.sh
unset TEST_HOOKS

echo "=== building the soak driver ==="
# The workspace's release profile is tuned for the WebAssembly bundle; the native driver (which
# also runs the in-process fakes and Storage) needs speed, not size.
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=2 \
  cargo build -p soak --release --locked

echo "=== soak (setup and build took $((SECONDS - start)) s) ==="
status=0
target/release/soak "$@" || status=$?
echo "soak: total $((SECONDS - start)) s"
exit "$status"
