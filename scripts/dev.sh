#!/usr/bin/env bash
# Starts the worker locally with everything it needs: the local stack (PostgreSQL + PostgREST
# with our migrations, a Supabase-compatible gateway and Storage service, OpenAI and Tripo fakes)
# and `wrangler dev` on http://127.0.0.1:${PORT:-8787}, which also serves the playground page
# at / (docs/playground.md). The local Supabase URL is http://127.0.0.1:${SUPABASE_PORT:-54321},
# as with the Supabase CLI (a free port, with a warning, when that one is taken). Ctrl-C stops
# everything.
#
# Real providers: export OPENAI_API_KEY and/or TRIPO_API_KEY before running to use the real
# services instead of the fakes (their base URLs default to the public APIs).
#
# Tripo v3 with signed webhooks against the fake: TRIPO_API_VERSION=v3 bash scripts/dev.sh (the
# fake then signs its webhooks with a local whsec_ secret and sends them to this worker's
# /providers/tripo/webhook; docs/operations.md "Tripo v3 and its webhooks").
set -euo pipefail
cd "$(dirname "$0")/.."
real_openai_key="${OPENAI_API_KEY:-}"
real_tripo_key="${TRIPO_API_KEY:-}"
tripo_api_version="${TRIPO_API_VERSION:-v2}"
bash scripts/setup.sh
source scripts/env.sh
PORT="${PORT:-8787}"
SUPABASE_PORT="${SUPABASE_PORT:-54321}"
state=.stack
mkdir -p "$state"
rm -f "$state/env"

cargo build -q -p stack --release
./target/release/stack up --dev-vars "$state/dev.vars" --env-out "$state/env" \
  --supabase-port "$SUPABASE_PORT" > "$state/stack.log" 2>&1 &
stack_pid=$!
cleanup() {
  [ -n "${wrangler_pid:-}" ] && kill -- -"$wrangler_pid" 2>/dev/null || true
  kill "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 120); do
  [ -s "$state/env" ] && break
  kill -0 "$stack_pid" 2>/dev/null || { cat "$state/stack.log" >&2; exit 1; }
  sleep 0.5
done
[ -s "$state/env" ] || { echo "stack did not start" >&2; cat "$state/stack.log" >&2; exit 1; }
# shellcheck disable=SC1090
source "$state/env"

# Real keys replace the fakes for that provider.
if [ -n "$real_openai_key" ]; then
  sed -i '/^OPENAI_API_KEY=/d; /^OPENAI_BASE_URL=/d' "$state/dev.vars"
  printf 'OPENAI_API_KEY=%s\nOPENAI_BASE_URL=https://api.openai.com/v1\n' "$real_openai_key" >> "$state/dev.vars"
  echo "using the real OpenAI API"
fi
if [ -n "$real_tripo_key" ]; then
  sed -i '/^TRIPO_API_KEY=/d; /^TRIPO_BASE_URL=/d' "$state/dev.vars"
  printf 'TRIPO_API_KEY=%s\nTRIPO_BASE_URL=https://api.tripo3d.ai/v2/openapi\n' "$real_tripo_key" >> "$state/dev.vars"
  echo "using the real Tripo API"
fi

if [ "$tripo_api_version" = "v3" ] && [ -z "$real_tripo_key" ]; then
  local_secret="whsec_local_dev_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  printf 'TRIPO_API_VERSION=v3\nTRIPO_WEBHOOK_SECRET=%s\nTRIPO_SAFETY_POLL_SECONDS=30\n' "$local_secret" >> "$state/dev.vars"
  fake_base="$(grep '^TRIPO_BASE_URL=' "$state/dev.vars" | cut -d= -f2- | sed 's#/v2/openapi$##')"
  fake_key="$(grep '^TRIPO_API_KEY=' "$state/dev.vars" | cut -d= -f2-)"
  curl -fsS -X PUT "$fake_base/__fake/tripo/webhook" -H 'content-type: application/json' \
    -d "{\"key\":\"$fake_key\",\"url\":\"http://127.0.0.1:$PORT/providers/tripo/webhook\",\"secret\":\"$local_secret\"}"
  echo "Tripo v3 with signed webhooks (fake at $fake_base/v3)"
fi

port_note=""
if [ "$STACK_SUPABASE_URL" != "http://127.0.0.1:$SUPABASE_PORT" ]; then
  port_note="   (port $SUPABASE_PORT is taken, another local Supabase? so a free port was used;
                 set SUPABASE_PORT=... to choose another)"
fi

cat <<TXT

  makeit3d-bff is starting on http://127.0.0.1:$PORT  (stack: $(grep -o 'started in [0-9.]*s' "$state/stack.log" || true))
  Playground:    http://127.0.0.1:$PORT/   (paste the token below into "Or paste an access token")
  Supabase URL:  $STACK_SUPABASE_URL$port_note
  Anon key:      $STACK_ANON_KEY
                 (the page reads both from http://127.0.0.1:$PORT/playground/config.json)
  Env file:      $state/env
  User id:       $STACK_USER_ID
  Token:         $STACK_USER_TOKEN

  Try, in another shell:
    export TOKEN='$STACK_USER_TOKEN'
    curl -s http://127.0.0.1:$PORT/health
    curl -s -X POST http://127.0.0.1:$PORT/generate/text-to-model \\
      -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -d '{"task_id":"demo-1","prompt":"a small red chair"}'
    curl -s http://127.0.0.1:$PORT/tasks/demo-1/status -H "Authorization: Bearer \$TOKEN"

TXT
export WORKER_BUILD_PROFILE="${WORKER_BUILD_PROFILE:---dev}"
setsid "$NODE22" "$WRANGLER_JS" dev --local --ip 127.0.0.1 --port "$PORT" \
  --persist-to "$state/wrangler" --env-file "$state/dev.vars" &
wrangler_pid=$!
wait "$wrangler_pid"
