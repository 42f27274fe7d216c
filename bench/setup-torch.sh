#!/usr/bin/env bash
# PyTorch in bench/.venv, for bench/torch_reference.py only: the tests never need it.
# Linux wheels on PyPI bring CUDA's libraries (a few GB); the script also runs on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import torch, safetensors, peft' 2>/dev/null; then
    .venv/bin/pip install --quiet torch safetensors numpy peft
fi
.venv/bin/python -c 'import torch; print("PyTorch", torch.__version__, "CUDA" if torch.cuda.is_available() else "CPU")'
