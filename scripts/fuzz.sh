#!/usr/bin/env bash
# Schema-driven fuzzing: Schemathesis generates requests from the worker's own `GET /openapi.json`
# and runs every one of its checks (`--checks all`) plus ours (tests/fuzz/hooks.py) on each
# answer, with a valid user token. Prints the figures (requests, failures, per check) and exits
# non-zero on any failure.
#
#   bash scripts/fuzz.sh                       # local stack + `wrangler dev`, ≥ 5,000 requests
#   FUZZ_MAX_EXAMPLES=40 bash scripts/fuzz.sh  # a short run (scripts/test.sh)
#   FUZZ_BASE_URL=http://127.0.0.1:8787 FUZZ_TOKEN=… bash scripts/fuzz.sh   # a running worker
#
# Settings: FUZZ_MAX_EXAMPLES (generated cases per operation and phase, default 800), FUZZ_SEED
# (default: random, printed), FUZZ_WORKERS (default 2), FUZZ_BASE_URL + FUZZ_TOKEN (reuse a
# running worker instead of starting one). Reports go to target/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SCHEMATHESIS_VERSION=4.32.5
venv=target/fuzz-venv
out=target/fuzz
mkdir -p "$out"

# Schemathesis from PyPI, pinned, in a venv under target/ (Python 3.11 from the machine).
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

base="${FUZZ_BASE_URL:-}"
token="${FUZZ_TOKEN:-}"
if [ -z "$base" ]; then
  bash scripts/setup.sh >/dev/null
  source scripts/env.sh
  state=$(mktemp -d "$root/$out/run.XXXXXX")
  cargo build -q -p stack --release
  # The stack (PostgreSQL + PostgREST, Storage, provider fakes) as dev.sh starts it, in its own
  # process group; provider fakes at a tenth of their real latency so accepted jobs finish fast.
  setsid ./target/release/stack up --dev-vars "$state/dev.vars" \
    --env-out "$state/env" --time-scale 0.1 > "$state/stack.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 240); do
    [ -s "$state/env" ] && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$state/stack.log" >&2; exit 1; }
    sleep 0.5
  done
  [ -s "$state/env" ] || { echo "fuzz: the stack did not start" >&2; cat "$state/stack.log" >&2; exit 1; }
  # shellcheck disable=SC1091
  source "$state/env"
  port=$(free_port)
  inspector=$(free_port)
  WORKER_BUILD_PROFILE="${WORKER_BUILD_PROFILE:---dev}" setsid "$NODE22" "$WRANGLER_JS" dev --local \
    --ip 127.0.0.1 --port "$port" --inspector-port "$inspector" --show-interactive-dev-session=false \
    --persist-to "$state/wrangler" --env-file "$state/dev.vars" < /dev/null > "$state/wrangler.log" 2>&1 &
  pids+=($!)
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$base/health" 2>/dev/null && break
    kill -0 "${pids[1]}" 2>/dev/null || { tail -n 40 "$state/wrangler.log" >&2; exit 1; }
    sleep 0.5
  done
  curl -fsS -o /dev/null "$base/health" || { echo "fuzz: the worker did not start" >&2; tail -n 40 "$state/wrangler.log" >&2; exit 1; }
  token="$STACK_USER_TOKEN"
fi
[ -n "$token" ] || { echo "fuzz: FUZZ_TOKEN is required with FUZZ_BASE_URL" >&2; exit 2; }

max_examples="${FUZZ_MAX_EXAMPLES:-800}"
seed="${FUZZ_SEED:-$RANDOM$RANDOM}"
workers="${FUZZ_WORKERS:-2}"
echo "fuzz: schemathesis $SCHEMATHESIS_VERSION against $base/openapi.json, --checks all, max examples $max_examples per operation, seed $seed"
start=$SECONDS
set +e
# The WebSocket route is left out: an HTTP fuzzer cannot upgrade (it answers 426 without
# `Upgrade: websocket`); the end-to-end suite covers it.
rm -f "$out/report.json" "$out/counts.json"
FUZZ_COUNTS="$out/counts.json" PYTHONPATH="$root/tests/fuzz${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks \
  "$venv/bin/schemathesis" --no-color --config-file tests/fuzz/schemathesis.toml run "$base/openapi.json" \
  --checks all --max-examples "$max_examples" --seed "$seed" --workers "$workers" \
  --header "Authorization: Bearer $token" --generation-database none \
  --exclude-path '/tasks/{task_id}/ws' \
  --report junit,json --report-dir "$out" --report-junit-path "$out/junit.xml" \
  --report-json-path "$out/report.json" > "$out/schemathesis.log" 2>&1
rc=$?
set -e
elapsed=$((SECONDS - start))
tail -n 60 "$out/schemathesis.log"
"$venv/bin/python" tests/fuzz/figures.py "$out/report.json" "$out/counts.json" "$elapsed" "$rc"
