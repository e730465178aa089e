#!/usr/bin/env bash
# Shared by the opt-in peer set-ups (setup-torch.sh, setup-ort.sh):
#   venv.sh DIR MODULES PACKAGE...
# creates the virtual environment bench/DIR if missing and pip-installs the
# packages unless Python can already import MODULES (comma-separated).
set -euo pipefail
cd "$(dirname "$0")"
venv=${1:?usage: venv.sh DIR MODULES PACKAGE...}
modules=${2:?usage: venv.sh DIR MODULES PACKAGE...}
shift 2
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import $modules" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "$@"
fi
