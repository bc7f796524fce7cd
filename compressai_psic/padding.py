r"""Padding images to a multiple of a model's downsampling factor, and cropping
back (what ``compressai.utils`` and the codecs of this package do around
``compress`` and ``decompress``)."""

from __future__ import annotations

from typing import Tuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ["Padding", "crop_padding", "pad_to_multiple"]

Padding = Tuple[int, int, int, int]


def pad_to_multiple(x: Tensor, multiple: int) -> Tuple[Tensor, Padding]:
    """Pads (B, C, H, W) images on the right and bottom to multiples of ``multiple``.

    Replicate padding avoids the artificial edge that zeros would create (and the
    bits it would cost). Returns the padded tensor and the padding
    ``(left, right, top, bottom)`` for :func:`crop_padding`.
    """
    if x.dim() != 4:
        raise ValueError(f"Expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    padding = (0, pad_w, 0, pad_h)
    if pad_h == 0 and pad_w == 0:
        return x, padding
    mode = "replicate" if min(height, width) > 0 else "constant"
    return F.pad(x, padding, mode=mode), padding


def crop_padding(x: Tensor, padding: Padding) -> Tensor:
    """Inverse of :func:`pad_to_multiple`."""
    left, right, top, bottom = padding
    height, width = x.shape[-2:]
    return x[..., top : height - bottom, left : width - right]
