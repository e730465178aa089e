#!/usr/bin/env bash
# Opt-in set-up for the PyTorch peer benchmark (`facegate bench train`) and
# for facegate's LibTorch build (scripts/build-tch.sh): a virtual environment
# in bench/.venv-torch with PyPI's torch (the wheel pulls its CUDA libraries,
# about 5 GB installed; on a machine without a GPU it runs on the CPU), numpy
# and Pillow. Never needed by the tests.
#
# torch is pinned to the release that tch 0.22 (burn-tch 0.22) binds, so the
# peer and burn's tch backend run the same library.
set -euo pipefail
here=$(dirname "$0")
torch_version=2.9.0
"$here/venv.sh" .venv-torch torch,numpy,PIL "torch==$torch_version" numpy pillow
py="$here/.venv-torch/bin/python"
if [[ $("$py" -c 'import torch; print(torch.__version__.split("+")[0])') != "$torch_version" ]]; then
  "$here/.venv-torch/bin/pip" install --quiet "torch==$torch_version"
fi
"$py" -c 'import torch; print("bench: torch", torch.__version__, "threads", torch.get_num_threads(), "cuda", torch.cuda.is_available())'
