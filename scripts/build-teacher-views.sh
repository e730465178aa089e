#!/usr/bin/env bash
# A consistent teacher (facegate-train's `views` module): augmented views of
# the CelebA training faces, rendered by `facegate train-views`, then embedded
# by dlib's ResNet like any face (scripts/build-teacher-embeddings.sh).
#
#   scripts/build-teacher-views.sh [PER_FACE] [MIX]
#
# Writes runs/views/celeba/<root>/<identity>/<stem>.v<j>.png and
# runs/teacher/celeba-views-dlib.tsv, which `[distill.views]` in a recipe
# names. With MIX > 0 (`facegate train-views --mix`: that share of the
# views blended with another person's face, function matching) they go to
# runs/views/celeba-mix<MIX> and runs/teacher/celeba-views-mix<MIX>-dlib.tsv. 4 views of the 12,636 faces of identities with ≥ 2 photos: about
# 20 minutes on 2 cores (measured: 04:17 to 04:38 on 2026-12-07).
set -euo pipefail
cd "$(dirname "$0")/.."
per_face="${1:-4}"
mix="${2:-0}"
views=runs/views/celeba
teacher=runs/teacher/celeba-views-dlib.tsv
if [ "$mix" != "0" ]; then
  views="runs/views/celeba-mix$mix"
  teacher="runs/teacher/celeba-views-mix$mix-dlib.tsv"
fi
roots=(../shared/data/celeba/wild_112 ../shared/data/celeba/align10k_112)
cargo build --release --locked -p facegate
args=()
for r in "${roots[@]}"; do args+=(--data "$r"); done
target/release/facegate train-views "${args[@]}" --min-images 2 --per-face "$per_face" --mix "$mix" --out "$views"
scripts/build-teacher-embeddings.sh "$teacher" "$views"/*/
