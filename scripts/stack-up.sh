#!/usr/bin/env bash
# Starts the local stack (PostgreSQL + migrations, PostgREST, the Supabase-style
# gateway with Storage, the OpenAI/Tripo fakes) and runs until Ctrl-C.
# Options are those of `stack up` (--state-dir, --dev-vars, --env-out, --time-scale);
# `scripts/stack-up.sh --help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q -p stack --release -- up "$@"
