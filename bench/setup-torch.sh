#!/usr/bin/env bash
# Opt-in set-up for the PyTorch peer benchmark (`facegate bench train`):
# a virtual environment in bench/.venv-torch with PyPI's torch (CPU use only;
# the wheel pulls its CUDA libraries, about 5 GB installed), numpy and Pillow.
# Never needed by the tests.
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv-torch
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import torch, numpy, PIL' 2>/dev/null; then
  "$venv/bin/pip" install --quiet torch numpy pillow
fi
"$venv/bin/python" -c 'import torch; print("bench: torch", torch.__version__, "threads", torch.get_num_threads())'
