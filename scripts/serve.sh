#!/usr/bin/env bash
# Builds pkg/ (size profile + wasm-opt; skipped when nothing changed) and serves the app.
#   bash scripts/serve.sh [--port 8080] [--host 127.0.0.1]
# Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

port=${PORT:-8080}
host=127.0.0.1
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --host) host=${2:?--host needs an address}; shift 2 ;;
    -h | --help) sed -n '2,4s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "serve.sh: unknown option $1 (use --port N, --host ADDRESS)" >&2; exit 2 ;;
  esac
done
case $port in '' | *[!0-9]*) echo "serve.sh: --port wants a number, got '$port'" >&2; exit 2 ;; esac

echo "serve: checking tools (the first run installs wasm-pack, wasm-bindgen-cli, Chromium: about 5 min)"
bash scripts/setup.sh
bash scripts/build-web.sh
exec python3 scripts/serve.py --host "$host" --port "$port"
