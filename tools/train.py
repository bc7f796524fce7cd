r"""Trains a privacy-shielded (PSIC) CompressAI model, as CompressAI's
``examples/train.py`` trains a plain one.

Same command as ``python -m compressai_psic.train`` (see there for the flags)::

    python tools/train.py -m bmshj2018-hyperprior -d data/flickr8k \
        --vlp open_clip:ViT-B-32:weights/ViT-B-32.pt --stage 1
    torchrun --nproc_per_node 4 tools/train.py ...

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

import sys

from compressai_psic.train.command import cli

if __name__ == "__main__":
    sys.exit(cli(prog="tools/train.py"))
