#!/usr/bin/env bash
# Every test: native (CPU backend) and in headless Chromium (WebGPU on SwiftShader + CPU fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

# The page's and the scripts' own logic (node's test runner): seconds.
node --test tests/js/

# The app's build (pkg/, the `web` profile: a compile of its own, mostly one long single-threaded
# link) runs beside the native and wasm tests, in its own target dir so that neither waits on
# cargo's lock.
mkdir -p artifacts
# Its own process group (setsid), so that a failing test stops the whole build with it.
setsid bash scripts/build-web.sh >artifacts/build-web.log 2>&1 &
web_build=$!
trap 'kill -- -$web_build 2>/dev/null || true' EXIT

cargo test --locked

# wasm-bindgen-test reads the Chromium flags from webdriver.json.
# For the whole run of a test binary, not per test: the SmolLM2-135M-shaped update takes about
# three minutes on SwiftShader.
export WASM_BINDGEN_TEST_TIMEOUT=1200
wasm-pack test --headless --chrome -- --locked

echo "test.sh: waiting for the app's build (artifacts/build-web.log)"
if ! wait $web_build; then
  cat artifacts/build-web.log
  echo "test.sh: scripts/build-web.sh failed" >&2
  exit 1
fi
trap - EXIT
grep -v '^\s*\(Compiling\|Downloaded\|Downloading\)' artifacts/build-web.log
# With nothing changed, a second build reuses pkg/ (its stamp) instead of optimising it again.
again=$(bash scripts/build-web.sh)
echo "$again"
grep -q "pkg/ is up to date" <<<"$again" || { echo "test.sh: build-web.sh rebuilt an unchanged pkg/" >&2; exit 1; }

# The app end to end in headless Chromium: on WebGPU, then with WebGPU unavailable (CPU fallback).
# Screenshots land in artifacts/e2e/.
node tests/e2e/app.mjs webgpu
node tests/e2e/app.mjs cpu
