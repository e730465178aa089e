#!/usr/bin/env bash
# A consistent teacher (facegate-train's `views` module): augmented views of
# the CelebA training faces, rendered by `facegate train-views`, then embedded
# by dlib's ResNet like any face (scripts/build-teacher-embeddings.sh).
#
#   scripts/build-teacher-views.sh [PER_FACE]
#
# Writes runs/views/celeba/<root>/<identity>/<stem>.v<j>.png and
# runs/teacher/celeba-views-dlib.tsv, which `[distill.views]` in a recipe
# names. 4 views of the 12,636 faces of identities with ≥ 2 photos: about
# 20 minutes on 2 cores (measured: 04:17 to 04:38 on 2026-12-07).
set -euo pipefail
cd "$(dirname "$0")/.."
per_face="${1:-4}"
views=runs/views/celeba
roots=(../shared/data/celeba/wild_112 ../shared/data/celeba/align10k_112)
cargo build --release --locked -p facegate
args=()
for r in "${roots[@]}"; do args+=(--data "$r"); done
target/release/facegate train-views "${args[@]}" --min-images 2 --per-face "$per_face" --out "$views"
scripts/build-teacher-embeddings.sh runs/teacher/celeba-views-dlib.tsv "$views"/*/
