#!/usr/bin/env bash
# Builds `facegate` with LibTorch as a training backend (`--device tch-cpu`,
# `--device tch-cuda`), against the PyTorch that bench/setup-torch.sh installs
# (PyPI's wheel ships libtorch and, on Linux x86-64, its CUDA runtime). The
# binary finds libtorch through an rpath, so it runs without LD_LIBRARY_PATH.
#
#   scripts/build-tch.sh            # → target/release/facegate (tch build)
#
# A later plain `cargo build` turns target/release/facegate back into the
# default (flex-only) build; both sets of dependencies stay cached.
set -euo pipefail
cd "$(dirname "$0")/.."
bench/setup-torch.sh
venv="$PWD/bench/.venv-torch"
torch_lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
# torch-sys asks `python3` where torch lives (LIBTORCH_USE_PYTORCH).
PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 \
  cargo rustc --release -p facegate --bin facegate --features tch -- \
  -C "link-arg=-Wl,-rpath,$torch_lib"
# One training step on LibTorch proves the library loads and runs.
target/release/facegate bench train --device tch-cpu --no-peer --preset tiny --images 32 --batch 16 --warmup 0 --steps 1
echo "build-tch: target/release/facegate trains on --device tch-cpu or tch-cuda (libtorch from $torch_lib)"
