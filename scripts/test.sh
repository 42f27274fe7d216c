#!/usr/bin/env bash
# Every test: native (CPU backend) and in headless Chromium (WebGPU on SwiftShader + CPU fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

cargo test --locked

# wasm-bindgen-test reads the Chromium flags from webdriver.json.
export WASM_BINDGEN_TEST_TIMEOUT=300
wasm-pack test --headless --chrome -- --locked
