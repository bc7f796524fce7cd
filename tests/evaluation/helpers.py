"""Images and colour maps shared by the evaluation tests."""

from __future__ import annotations

import math

import torch

from compressai_psic.datasets import SceneCaptions
from compressai_psic.io.images import pil_to_tensor

__all__ = ["COLOUR_MAP", "COLOUR_OFFSET", "psnr", "scene_batch", "smooth_images"]

# A global colour map that mixes channels (a rotation of RGB, scaled, plus an
# offset): invertible, and it keeps [0, 1] inside [0.15, 0.85], so nothing clips.
COLOUR_MAP = torch.tensor([[0.1, 0.6, 0.0], [0.0, 0.1, 0.6], [0.6, 0.0, 0.1]])
COLOUR_OFFSET = torch.tensor([0.15, 0.15, 0.15])


def scene_batch(split: str, n: int, size: int = 32) -> torch.Tensor:
    """The first ``n`` scenes of ``split`` as a ``(n, 3, size, size)`` batch."""
    data = SceneCaptions(split, num_samples=n, image_size=size)
    return torch.cat([pil_to_tensor(data.load_image(i)) for i in range(n)])


def smooth_images() -> torch.Tensor:
    """Two smooth 40×48 ramps (JPEG codes them well)."""
    ramp = torch.linspace(0, 1, 48)
    red = ramp.view(1, -1).expand(40, 48)
    green = ramp[:40].view(-1, 1).expand(40, 48)
    one = torch.stack([red, green, torch.full((40, 48), 0.3)])
    return torch.stack([one, one.flip(-1)])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = (a - b).pow(2).mean().item()
    return 10 * math.log10(1 / mse)
