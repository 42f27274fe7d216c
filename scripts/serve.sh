#!/usr/bin/env bash
# Builds pkg/ (size profile + wasm-opt) and serves the app on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
bash scripts/build-web.sh
exec python3 scripts/serve.py --port "${PORT:-8080}"
