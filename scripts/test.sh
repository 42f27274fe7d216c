#!/usr/bin/env bash
# Every test: native (CPU backend) and in headless Chromium (WebGPU on SwiftShader + CPU fallback)
# and Firefox ESR (WebGPU on lavapipe + CPU fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

# Formatting at 100 columns: rustfmt (rustfmt.toml) and Prettier (.prettierrc.json).
cargo fmt --check
node_modules/.bin/prettier --check "www/*.js" "tests/**/*.mjs" "scripts/*.mjs" "bench/*.mjs"

# The page's and the scripts' own logic (node's test runner): seconds.
node --test tests/js/

# The app's build and end-to-end tests run beside the native and wasm tests: the build is a
# compile of its own (the `web` profile, in target/web so that neither cargo waits on the other's
# lock) that ends in a long single-threaded link, and the browser runs leave a core free. In its
# own process group (setsid), so that a failure here stops it too; its output comes at the end.
mkdir -p artifacts
# Both target dirs exist before the two cargos start: in a clean clone each would create
# target/ itself (atomically, by a rename), and one rename can replace the other's half-made dir.
mkdir -p target/web
setsid bash scripts/test-app.sh >artifacts/test-app.log 2>&1 &
app=$!
trap 'kill -- -$app 2>/dev/null || true' EXIT

cargo test --locked
# The API docs build without a warning (broken links, private items); the crate docs' example
# ran above as a doctest.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked

# wasm-bindgen-test reads the Chromium flags from webdriver.json.
# For the whole run of a test binary, not per test: the SmolLM2-135M-shaped update takes about
# three minutes on SwiftShader.
export WASM_BINDGEN_TEST_TIMEOUT=1200
wasm-pack test --headless --chrome -- --locked --profile wasm-test
# The same tests in Firefox ESR: its own WebGPU (wgpu, on Mesa's lavapipe) and the CPU fallback.
wasm-pack test --headless --firefox -- --locked --profile wasm-test

echo "test.sh: native and wasm tests passed; waiting for the app's (scripts/test-app.sh)"
status=0
wait $app || status=$?
trap - EXIT
cat artifacts/test-app.log
[ $status -eq 0 ] || { echo "test.sh: scripts/test-app.sh failed (exit $status)" >&2; exit $status; }
