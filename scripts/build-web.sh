#!/usr/bin/env bash
# Builds pkg/ for the app: the wasm library with the size profile, its JS bindings, then
# wasm-opt -Oz (binaryen from npm, pinned in package-lock.json; Debian's is too old).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

cargo build --locked --lib --target wasm32-unknown-unknown --profile web
rm -rf pkg
wasm-bindgen --target web --out-dir pkg target/wasm32-unknown-unknown/web/webdpo.wasm
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd \
  pkg/webdpo_bg.wasm -o pkg/webdpo_bg.wasm
ls -l pkg/webdpo_bg.wasm
node scripts/precompress.mjs pkg www
