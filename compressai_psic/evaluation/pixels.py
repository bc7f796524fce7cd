r"""Pixel-level helpers of the attacks: 8-bit quantisation, real JPEG
re-encoding and resizing through PIL, and noisy upscaling."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..transforms import gaussian_blur

__all__ = ["downscale", "jpeg_reencode", "noisy_upscale_8bit", "quantise_8bit"]


def quantise_8bit(images: Tensor) -> Tensor:
    """Clamps to ``[0, 1]`` and rounds to multiples of 1/255 (a saved image)."""
    return images.clamp(0, 1).mul(255).round().div(255)


def _to_pil(image: Tensor) -> Image.Image:
    array = image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
    return Image.fromarray(array.cpu().numpy())


def _from_pil(image: Image.Image, like: Tensor) -> Tensor:
    array = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    return array.permute(2, 0, 1).to(device=like.device, dtype=torch.float32) / 255.0


def jpeg_reencode(images: Tensor, quality: int) -> Tensor:
    r"""Re-encodes ``(B, 3, H, W)`` images in [0, 1] as JPEG in memory (PIL,
    4:2:0 chroma subsampling as PIL's default) and decodes them again."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    out = []
    for image in images:
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(_from_pil(decoded, images))
    return torch.stack(out)


def downscale(images: Tensor, factor: float = 0.5) -> Tensor:
    r"""Resizes ``(B, 3, H, W)`` images by ``factor`` with PIL's bicubic filter
    (antialiased, as image hosts and scrapers resize), through 8-bit pixels."""
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    height, width = images.shape[-2:]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    out = [
        _from_pil(_to_pil(image).resize(size, Image.BICUBIC), images)
        for image in images
    ]
    return torch.stack(out)


def noisy_upscale_8bit(images: Tensor, seed: int = 0) -> Tensor:
    r"""Noisy upscaling as a scraper runs it: Gaussian noise (σ 0.03, drawn with
    ``seed``), a real JPEG at q75 (PIL), a Gaussian blur of σ 0.5."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    noisy = jpeg_reencode(quantise_8bit(images + 0.03 * noise), 75)
    return gaussian_blur(noisy, 0.5)
