#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

have() { command -v "$1" >/dev/null 2>&1; }

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# The threaded browser build rebuilds std with atomics (-Z build-std): a pinned nightly and its
# std sources (scripts/build-web.sh).
nightly=$(cat scripts/nightly-toolchain)
rustup run "$nightly" rustc --version >/dev/null 2>&1 &&
  [ -d "$(rustup run "$nightly" rustc --print sysroot)/lib/rustlib/src/rust/library" ] ||
  rustup toolchain install "$nightly" --profile minimal --component rust-src

have wasm-pack || cargo install wasm-pack
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
[ -f Cargo.lock ] || cargo generate-lockfile
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# Headless Chromium (WebGPU on SwiftShader) and its driver for browser tests.
if ! have chromium || ! have chromedriver; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi

# Firefox ESR, Mesa's software Vulkan (its WebGPU's adapter here) and geckodriver (pinned).
if ! have firefox-esr || [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq firefox-esr mesa-vulkan-drivers
fi
[ "$(geckodriver --version 2>/dev/null | awk 'NR==1 {print $2}')" = 0.37.1 ] ||
  cargo install geckodriver --version 0.37.1 --locked --debug # a dev build: minutes less, fast enough

if ! have node || ! have npm; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
# Node tools (binaryen's wasm-opt, playwright-core, Prettier), pinned by package-lock.json.
[ -x node_modules/.bin/wasm-opt ] && [ -d node_modules/playwright-core ] && [ -x node_modules/.bin/prettier ] ||
  npm ci --no-audit --no-fund
