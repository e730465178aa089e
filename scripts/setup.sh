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

# Say which Cortex-M toolchain the builds will use.
cargo xtask toolchain
