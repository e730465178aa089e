#!/usr/bin/env bash
# Opt-in set-up for the onnxruntime peer of `facegate bench engine
# --onnxruntime`: a virtual environment in bench/.venv-ort with PyPI's
# onnxruntime (CPU), numpy and Pillow. Never needed by the tests.
set -euo pipefail
here=$(dirname "$0")
"$here/venv.sh" .venv-ort onnxruntime,numpy,PIL,onnx onnxruntime numpy pillow onnx
"$here/.venv-ort/bin/python" -c 'import onnxruntime; print("bench: onnxruntime", onnxruntime.__version__)'
