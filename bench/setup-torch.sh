#!/usr/bin/env bash
# Opt-in set-up for the PyTorch peer benchmark (`facegate bench train`):
# a virtual environment in bench/.venv-torch with PyPI's torch (CPU use only;
# the wheel pulls its CUDA libraries, about 5 GB installed), numpy and Pillow.
# Never needed by the tests.
set -euo pipefail
here=$(dirname "$0")
"$here/venv.sh" .venv-torch torch,numpy,PIL torch numpy pillow
"$here/.venv-torch/bin/python" -c 'import torch; print("bench: torch", torch.__version__, "threads", torch.get_num_threads())'
