#!/usr/bin/env bash
# The app's tests: builds pkg/ (scripts/build-web.sh), checks that an unchanged pkg/ is reused,
# then drives the app end to end in headless Chromium, on WebGPU (SwiftShader) and with WebGPU
# unavailable (the CPU fallback), the threaded CPU build against the single-threaded one, then
# the npm package installed into examples/embed/.
# Screenshots land in artifacts/e2e/. scripts/test.sh runs this
# beside the native and wasm tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/build-web.sh | { grep -v '^\s*\(Compiling\|Downloaded\|Downloading\)' || true; }
# With nothing changed, a second build reuses pkg/ (its stamp) instead of optimising it again.
again=$(bash scripts/build-web.sh)
echo "$again"
for out in pkg pkg/threads; do
  grep -q "build-web: $out/ is up to date" <<<"$again" ||
    { echo "test-app.sh: build-web.sh rebuilt an unchanged $out/" >&2; exit 1; }
done

node tests/e2e/app.mjs webgpu
node tests/e2e/app.mjs cpu
node tests/e2e/threads.mjs chromium
node tests/e2e/threads.mjs firefox
node tests/e2e/durability.mjs
node tests/e2e/embed.mjs
