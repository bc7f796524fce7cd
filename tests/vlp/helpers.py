"""Tiny configurations of the scene-CLIP family, for the VLP and demo tests."""

from __future__ import annotations

from typing import List

import torch

__all__ = ["TINY_CONFIG", "TINY_RN_CONFIG", "model_tokens"]

#: A ViT CLIP of the demo VLP's family, small enough for unit tests.
TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1},
    "text_cfg": {"context_length": 48, "width": 64, "heads": 1, "layers": 1},
}

#: A ResNet-tower CLIP with its own normalisation (as the evaluation VLPs).
TINY_RN_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": False,
    # A list of layers builds open_clip's ModifiedResNet (an int tower size).
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 48, "width": 32, "heads": 1, "layers": 1},
    "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
}  # fmt: skip


def model_tokens(captions: List[str]) -> torch.Tensor:
    """Tokens of ``captions`` at the configurations' context length."""
    import open_clip

    return open_clip.SimpleTokenizer(context_length=48)(captions)
