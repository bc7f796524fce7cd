#!/usr/bin/env bash
# Quickstart: installs the package into .venv (first run only) and runs the demo:
# generated scenes compressed once, decoded twice (full and protected), and a
# bundled demo VLP asked what it sees. Offline, CPU, about a minute.
# Extra arguments go to `psic demo` (e.g. --num-images 20 --output-dir out/).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/psic ]; then
  python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  python -c "import torch, torchvision" 2>/dev/null \
    || pip install -q "torch==2.14.1" "torchvision==0.29.1"
  pip install -q -e ".[dev]"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
psic demo "$@"
