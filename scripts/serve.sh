#!/usr/bin/env bash
# Builds pkg/ with wasm-pack and serves the app on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
wasm-pack build --target web --release --out-dir pkg -- --locked
exec python3 scripts/serve.py --port "${PORT:-8080}"
