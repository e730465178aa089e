#!/usr/bin/env bash
# Builds the shipped `nano` model from its recipe and regenerates the model card.
#
#   scripts/build-reference-model.sh [RUN_DIR]
#
# Trains (or resumes) models/recipes/nano-cosface.toml in RUN_DIR (default
# runs/nano-cosface; about an hour on 2 cores), then: float ONNX, int8
# quantization calibrated on 200 CelebA faces (never LFW) → .fgm blob and QDQ
# ONNX, the training config and history beside them in models/, the
# Cortex-M7 cost from QEMU, host latency, and `facegate model card` (LFW float / QDQ /
# engine, threshold for FAR 1e-3).
set -euo pipefail
cd "$(dirname "$0")/.."
run="${1:-runs/nano-cosface}"
fg() { cargo run --release --quiet -p facegate -- "$@"; }
if [[ -f "$run/embedder.onnx" ]]; then
  echo "using the finished run in $run"
elif [[ -f "$run/checkpoint/state.json" ]]; then
  fg train --out "$run" --resume
else
  fg train --config models/recipes/nano-cosface.toml --out "$run"
fi
cp "$run/embedder.onnx" models/nano.onnx
cp "$run/config.toml" models/nano.recipe.toml
cp "$run/metrics.csv" models/nano.train.csv
fg quantize --model models/nano.onnx --calib ../shared/data/celeba/wild_112 --images 200 \
  --out models/nano.fgm --qdq models/nano.int8.onnx
# The firmware's engine check runs models/nano.fgm when it is present: record its cost.
cargo xtask qemu --cost-out models/nano.cortex-m7.json
# Host latency (a record of this run on this CPU; best on an otherwise idle machine).
fg bench engine --blob models/nano.fgm --float models/nano.onnx --qdq models/nano.int8.onnx \
  --faces ../shared/data/lfw/aligned_112 --images 50 --record models/nano.host-latency.json
fg model card --models models
