#!/usr/bin/env bash
# A build step's stamp: one line per input (a file's SHA-256, or a text such as a tool's version)
# and per output, so that a step can be skipped when none of them changed since it last ran.
#   stamp.sh check STAMP ARG...  exit 0 if STAMP records exactly these inputs and outputs;
#                                otherwise exit 1 and print what changed, on one line
#   stamp.sh write STAMP ARG...  record them (after the step succeeded)
# Each ARG is `file:NAME=PATH` (hashed) or `text:NAME=VALUE` (kept as it is).
set -euo pipefail

describe() {
  local arg kind name value
  for arg in "$@"; do
    kind=${arg%%:*}
    name=${arg#*:}
    name=${name%%=*}
    value=${arg#*=}
    case $kind in
      file)
        if [ -f "$value" ]; then
          echo "$name $(sha256sum <"$value" | cut -d' ' -f1)"
        else
          echo "$name missing"
        fi
        ;;
      text) echo "$name $value" ;;
      *)
        echo "stamp.sh: $arg: expected file:NAME=PATH or text:NAME=VALUE" >&2
        exit 2
        ;;
    esac
  done
}

[ $# -ge 2 ] || { echo "usage: stamp.sh check|write STAMP ARG..." >&2; exit 2; }
command=$1
stamp=$2
shift 2
now=$(describe "$@")
case $command in
  check)
    if [ ! -f "$stamp" ]; then
      echo "no stamp yet"
      exit 1
    fi
    # Names of the lines that differ, in either direction, once each.
    changed=$( (diff <(echo "$now") "$stamp" || true) | sed -n 's/^[<>] \([^ ]*\) .*/\1/p' | sort -u | paste -sd' ')
    if [ -n "$changed" ]; then
      echo "changed: $changed"
      exit 1
    fi
    ;;
  write) echo "$now" >"$stamp" ;;
  *)
    echo "usage: stamp.sh check|write STAMP ARG..." >&2
    exit 2
    ;;
esac
