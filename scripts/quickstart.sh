#!/usr/bin/env bash
# Quickstart: installs the package into .venv (first run only) and runs the demo:
# generated scenes compressed once, decoded twice (full and protected), and a
# bundled demo VLP asked what it sees. Offline once installed, CPU; the demo
# itself takes about 45 s on 2 cores.
# Extra arguments go to `psic demo` (e.g. --num-images 20 --output-dir out/).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/psic ]; then
  python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  if ! python -c "import torch, torchvision" 2>/dev/null; then
    # The lighter route first: PyTorch's CPU-only pair (no CUDA libraries, about a
    # quarter of the size). Where PyTorch's index cannot be reached, the default
    # wheels (a CUDA build on Linux x86_64); 2.14.1/0.29.1 is the newest pair
    # some machines' pip serves.
    pip install -q --timeout 15 --retries 1 \
      --index-url https://download.pytorch.org/whl/cpu \
      "torch==2.9.1" "torchvision==0.24.1" 2>/dev/null \
      || pip install -q "torch==2.14.1" "torchvision==0.29.1"
  fi
  pip install -q -e ".[demo]"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
psic demo "$@"
