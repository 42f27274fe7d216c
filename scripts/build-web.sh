#!/usr/bin/env bash
# Builds pkg/ for the app: the wasm library with the size profile, its JS bindings, then
# wasm-opt -Oz (binaryen from npm, pinned in package-lock.json; Debian's is too old); and the
# same for the threaded CPU build, in pkg/threads/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

# Each build has its own target dir: the tests' cargo (scripts/test.sh runs both at once) holds
# target/'s lock, and the threaded build's flags would rebuild everything the other built.
opt_flags=(-Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd)

# Every file wasm-bindgen and wasm-opt leave in `$1`, hashed together (not the npm package's
# own files and API pages, scripts/package.mjs, nor the other build's).
outputs() {
  [ -d "$1" ] || return 0
  (cd "$1" && find . -type f ! -name '*.br' ! -name .stamp ! -name package.json ! -name README.md \
    ! -path './models/*' ! -path './api/*' ! -path './threads/*' | LC_ALL=C sort |
    xargs -r sha256sum | sha256sum | cut -d' ' -f1)
}

# `bind WASM OUT [WASM-OPT FLAG...]`: wasm-bindgen's JS bindings and wasm-opt -Oz, into OUT,
# skipped when neither cargo's output, the tools' versions nor this script changed since OUT was
# last built (OUT/.stamp, scripts/stamp.sh).
bind() {
  local wasm=$1 out=$2 flags=("${opt_flags[@]}" "${@:3}")
  local stamp=(
    "file:webdpo.wasm=$wasm"
    "file:build-web.sh=scripts/build-web.sh"
    "text:wasm-bindgen=$(wasm-bindgen --version)"
    "text:wasm-opt=$(node_modules/.bin/wasm-opt --version)"
    "text:wasm-opt-flags=${flags[*]}"
  )
  local why
  if why=$(bash scripts/stamp.sh check "$out/.stamp" "${stamp[@]}" "text:pkg=$(outputs "$out")"); then
    echo "build-web: $out/ is up to date with $wasm; skipped wasm-bindgen and wasm-opt"
  else
    echo "build-web: rebuilding $out/ ($why): wasm-bindgen, then wasm-opt -Oz (about 3 min)"
    find "$out" -mindepth 1 -maxdepth 1 ! -name threads -exec rm -rf {} + 2>/dev/null || true
    wasm-bindgen --target web --out-dir "$out" "$wasm"
    node_modules/.bin/wasm-opt "${flags[@]}" "$out/webdpo_bg.wasm" -o "$out/webdpo_bg.wasm"
    ls -l "$out/webdpo_bg.wasm"
    bash scripts/stamp.sh write "$out/.stamp" "${stamp[@]}" "text:pkg=$(outputs "$out")"
  fi
}

echo "build-web: cargo, web profile (about 12 min on 2 cores from a clean tree; seconds when unchanged)"
CARGO_TARGET_DIR=target/web cargo build --locked --lib --target wasm32-unknown-unknown --profile web
bind target/web/wasm32-unknown-unknown/web/webdpo.wasm pkg

# The threaded CPU build (www/builds.js): shared memory and atomics, so std is built again with
# them, which takes the nightly that scripts/nightly-toolchain pins (setup.sh installs it). No
# WebGPU (Cargo.toml), so a shorter build. `RUSTFLAGS` replaces .cargo/config.toml's, so simd128
# is named again. The linker makes the memory shared and imported (each worker instantiates the
# module on the same memory), up to wasm32's 4 GiB, and exports what wasm-bindgen needs to give
# each thread its own TLS.
echo "build-web: cargo, the threaded CPU build (about 6 min on 2 cores from a clean tree)"
link=(--shared-memory --import-memory --max-memory=4294967296
  --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base)
CARGO_TARGET_DIR=target/web-threads \
  RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
    ${link[*]/#/-C link-arg=}" \
  cargo "+$(cat scripts/nightly-toolchain)" build --locked --lib --target wasm32-unknown-unknown \
  --profile web -Z build-std=panic_abort,std
bind target/web-threads/wasm32-unknown-unknown/web/webdpo.wasm pkg/threads --enable-threads

# The npm package around it (package.json, README, the built-in model; not in the stamp).
node scripts/package.mjs
# The offline release's name (www/release.js): a hash of every file the service worker keeps.
node scripts/release.mjs
# Brotli copies: only those older than their file are written again.
node scripts/precompress.mjs pkg www
