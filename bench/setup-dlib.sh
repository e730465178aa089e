#!/usr/bin/env bash
# Opt-in set-up for the dlib peer of `facegate bench photo --dlib`: Debian's
# libdlib and dlib's model files (the teacher's, fetched and checked by
# scripts/teacher/fetch-dlib.sh), then bench/dlib_photo.cpp compiled into
# target/bench/dlib_photo. Never needed by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/teacher/fetch-dlib.sh
tool=target/bench/dlib_photo
mkdir -p target/bench
g++ -O2 -std=c++17 -DDLIB_JPEG_SUPPORT -DDLIB_PNG_SUPPORT -DDLIB_USE_BLAS -DDLIB_USE_LAPACK \
  -o "$tool" bench/dlib_photo.cpp \
  -ldlib -lpthread -lpng -ljpeg -lz -l:libblas.so.3 -l:liblapack.so.3
echo "bench: dlib peer ready ($tool)"
