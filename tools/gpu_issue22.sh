#!/usr/bin/env bash
# Issue 22 on a lent GPU, in one run: trains the keyed shift of the demo codec
# with more steps than the CPU allowed, then measures it as the card does.
# Usage: bash tools/gpu_issue22.sh [OUT]   (OUT defaults to runs/gpu22)
# Prints what ran where; the figures land in OUT/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu22}"
mkdir -p "$OUT"
python -c "import torch; print('device:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
python -m compressai_psic.train.keyed --init zoo/demo-psic-d4a9e740.pth.tar \
    --steps 2000 --val-every 100 --form mix --lambda-mse 300 --lambda-colour 3000 \
    --device cuda --save-dir "$OUT/train" -f
python tools/eval_protection.py --model "$OUT/train/keyed_best.pth.tar" \
    --images 500 --latent-steps 300 --latent-images 200 --latent-starts 2 \
    --out "$OUT/eval" --threads 16 --force
