#!/usr/bin/env bash
# Quickstart: installs the package into .venv (first run only) and runs the demo:
# generated scenes compressed once, decoded twice (full and protected), and a
# bundled demo VLP asked what it sees. Offline once installed, CPU; the demo
# itself takes about 20 s on 2 cores (BENCHMARKS.md, "Demo").
# Extra arguments go to `psic demo` (e.g. --num-images 20 --output-dir out/; -f to
# replace the psic-demo/ files of an earlier run, which it refuses otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

# (Re)installs unless a previous run finished: psic installed and torchvision importing.
if [ ! -x .venv/bin/psic ] || ! .venv/bin/python -c "import torchvision" 2>/dev/null; then
  python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  if ! python -c "import torch, torchvision" 2>/dev/null; then
    # The lighter routes first. 1) PyTorch's CPU-only pair from its CPU index (no
    # CUDA libraries, about a quarter of the size). 2) Where that index cannot be
    # reached, a torch CPU wheel that pip finds locally (--find-links) with PyPI's
    # torchvision, made to import beside it by scripts/torchvision_without_ops.py.
    # 3) The default wheels (a CUDA build on Linux x86_64, about 6 GB); 2.14.1/0.29.1
    # is the newest pair some machines' pip serves.
    if pip install -q --timeout 15 --retries 1 \
      --index-url https://download.pytorch.org/whl/cpu \
      "torch==2.9.1" "torchvision==0.24.1" 2>/dev/null; then
      :
    elif pip install -q --no-cache-dir "torch==2.13.0+cpu" 2>/dev/null; then
      pip install -q --no-cache-dir --no-deps "torchvision==0.28.0"
    else
      pip install -q --no-cache-dir "torch==2.14.1" "torchvision==0.29.1"
    fi
  fi
  pip install -q --no-cache-dir -e ".[demo]"
  python scripts/torchvision_without_ops.py   # no change where torchvision imports
fi
# shellcheck disable=SC1091
. .venv/bin/activate
psic demo "$@"
