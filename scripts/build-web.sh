#!/usr/bin/env bash
# Builds pkg/ for the app: the wasm library with the size profile, its JS bindings, then
# wasm-opt -Oz (binaryen from npm, pinned in package-lock.json; Debian's is too old).
# wasm-bindgen and wasm-opt are skipped when neither cargo's output, the tools' versions nor this
# script changed since pkg/ was last built (pkg/.stamp, scripts/stamp.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

# Its own target dir: the tests' cargo (scripts/test.sh runs both at once) holds target/'s lock.
export CARGO_TARGET_DIR=target/web
wasm=$CARGO_TARGET_DIR/wasm32-unknown-unknown/web/webdpo.wasm
opt_flags=(-Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd)

echo "build-web: cargo, web profile (about 12 min on 2 cores from a clean tree; seconds when unchanged)"
cargo build --locked --lib --target wasm32-unknown-unknown --profile web

# Every file wasm-bindgen and wasm-opt leave in pkg/, hashed together (not the npm package's
# own files and API pages, scripts/package.mjs).
outputs() {
  [ -d pkg ] || return 0
  (cd pkg && find . -type f ! -name '*.br' ! -name .stamp ! -name package.json ! -name README.md \
    ! -path './models/*' ! -path './api/*' | LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -d' ' -f1)
}
stamp=(
  "file:webdpo.wasm=$wasm"
  "file:build-web.sh=scripts/build-web.sh"
  "text:wasm-bindgen=$(wasm-bindgen --version)"
  "text:wasm-opt=$(node_modules/.bin/wasm-opt --version)"
  "text:wasm-opt-flags=${opt_flags[*]}"
)
if why=$(bash scripts/stamp.sh check pkg/.stamp "${stamp[@]}" "text:pkg=$(outputs)"); then
  echo "build-web: pkg/ is up to date with $wasm; skipped wasm-bindgen and wasm-opt"
else
  echo "build-web: rebuilding pkg/ ($why): wasm-bindgen, then wasm-opt -Oz (about 3 min)"
  rm -rf pkg
  wasm-bindgen --target web --out-dir pkg "$wasm"
  node_modules/.bin/wasm-opt "${opt_flags[@]}" pkg/webdpo_bg.wasm -o pkg/webdpo_bg.wasm
  ls -l pkg/webdpo_bg.wasm
  bash scripts/stamp.sh write pkg/.stamp "${stamp[@]}" "text:pkg=$(outputs)"
fi
# The npm package around it (package.json, README, the built-in model; not in the stamp).
node scripts/package.mjs
# The offline release's name (www/release.js): a hash of every file the service worker keeps.
node scripts/release.mjs
# Brotli copies: only those older than their file are written again.
node scripts/precompress.mjs pkg www
