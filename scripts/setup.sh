#!/usr/bin/env bash
# Installs, idempotently, everything a fresh machine lacks to build, run and test the worker:
# the wasm32 target, worker-build, wasm-bindgen-cli at exactly Cargo.lock's version, the npm
# packages (wrangler, Node 22, binaryen, PostgREST, esbuild, the playground's libraries and
# playwright-core), PostgreSQL 15 and Chromium (the playground's browser tests), then builds the
# playground page. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
t() { local s=$SECONDS; "$@"; echo "setup: $* took $((SECONDS - s))s"; }

rustup target list --installed | grep -qx wasm32-unknown-unknown || t rustup target add wasm32-unknown-unknown

WB_VER=0.8.7
[ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" = "$WB_VER" ] \
  || t cargo install worker-build --version "$WB_VER" --locked

# The CLI must equal the wasm-bindgen library in Cargo.lock exactly. Not --locked: its lock pins a
# crate version that is no longer published.
WBG_VER=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
[ "$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $WBG_VER" ] \
  || t cargo install wasm-bindgen-cli --version "$WBG_VER" --force

# npm ci is not usable (the lock lacks other platforms' optional packages); npm install respects the lock.
stamp=node_modules/.makeit3d-installed
want=$(sha256sum package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  t npm install --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# Debian packages: PostgreSQL 15 for the local stack, Chromium for the playground's browser tests.
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    t apt-get update -qq
    DEBIAN_FRONTEND=noninteractive t apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# The playground page (wrangler's [build] runs this too; here so a fresh clone has the assets
# directory that wrangler.toml names before any wrangler command).
t bash scripts/playground-build.sh
echo "setup: ready"
