r"""Blind purification: the filters a scraper runs to wash a protection off.

Adversarial perturbations live in fine, high-frequency structure, so the cheap
defence of a scraper is to smooth it away before a VLP reads the image, at a
price of well under a dB on a clean image (Hönig et al. 2024, "Adversarial
perturbations cannot reliably protect artists from generative AI", washed Glaze
off this way). These are the purifications of the threat model, as
differentiable functions of ``(B, 3, H, W)`` tensors in ``[0, 1]`` (the
evaluation quantises their output to 8 bits, training sees through them with
expectation over transformations, EOT):

=====================  =======================================================
:func:`gaussian_blur`  separable Gaussian blur of standard deviation σ
                       (reflect padding, kernel radius ⌈3σ⌉)
:func:`median_filter`  k×k median (gradient to the selected pixel)
:func:`down_up`        area downscaling by ``1/k`` then bicubic upscaling back
:func:`noisy_upscale`  Gaussian noise, JPEG, mild blur: the "noisy upscaling"
                       purification (noise σ, JPEG quality and blur σ given)
=====================  =======================================================

The modules :class:`RandomBlur`, :class:`MedianFilter`, :class:`RandomDownUp`
and :class:`NoisyUpscale` draw their parameters per call for EOT.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .scraper import Augmentation, _check_images, diff_jpeg

__all__ = [
    "MedianFilter",
    "NoisyUpscale",
    "RandomBlur",
    "RandomDownUp",
    "down_up",
    "gaussian_blur",
    "gaussian_kernel",
    "median_filter",
    "noisy_upscale",
    "purification_transforms",
]


def gaussian_kernel(sigma: float, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` (radius ⌈3σ⌉)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    r"""Separable Gaussian blur of each channel (reflect padding)."""
    _check_images(x)
    kernel = gaussian_kernel(sigma, x.dtype, x.device)
    radius = kernel.numel() // 2
    channels = x.size(1)
    # Reflect padding needs radius < size; tiny images fall back to replicate.
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    out = F.pad(x, (radius, radius, 0, 0), mode=mode)
    out = F.conv2d(
        out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels
    )
    out = F.pad(out, (0, 0, radius, radius), mode=mode)
    return F.conv2d(
        out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels
    )


def median_filter(x: Tensor, size: int = 3) -> Tensor:
    r"""``size``×``size`` median of each channel (reflect padding)."""
    _check_images(x)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number, got {size}")
    if size == 1:
        return x
    radius = size // 2
    batch, channels, height, width = x.shape
    mode = "reflect" if radius < min(height, width) else "replicate"
    padded = F.pad(x, (radius,) * 4, mode=mode)
    patches = F.unfold(padded, size).view(batch, channels, size * size, height * width)
    return patches.median(dim=2).values.view(batch, channels, height, width)


def down_up(x: Tensor, factor: int) -> Tensor:
    r"""Area downscaling by ``1/factor``, then bicubic upscaling to the input size
    (clamped to ``[0, 1]``): what a thumbnail pipeline does."""
    _check_images(x)
    if factor < 2:
        raise ValueError(f"factor must be at least 2, got {factor}")
    height, width = x.shape[-2:]
    small = F.adaptive_avg_pool2d(
        x, (max(1, round(height / factor)), max(1, round(width / factor)))
    )
    out = F.interpolate(
        small, size=(height, width), mode="bicubic", align_corners=False
    )
    return out.clamp(0, 1)


def noisy_upscale(
    x: Tensor,
    noise_std: float = 0.03,
    quality: float = 75,
    blur_sigma: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Noisy upscaling: Gaussian noise of std ``noise_std``, JPEG at ``quality``
    (differentiable, :func:`~compressai_psic.transforms.diff_jpeg`), then a
    Gaussian blur of ``blur_sigma``. The noise is drawn on the CPU with
    ``generator`` (reproducible) and moved to ``x``'s device."""
    _check_images(x)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    out = (x + noise_std * noise.to(x.device)).clamp(0, 1)
    out = diff_jpeg(out, quality)
    return gaussian_blur(out, blur_sigma).clamp(0, 1)


# ------------------------------------------------------------------------- modules


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class RandomBlur(Augmentation):
    """:func:`gaussian_blur` with σ drawn uniformly from ``[min_sigma, max_sigma]``."""

    def __init__(self, min_sigma: float = 0.5, max_sigma: float = 1.5):
        super().__init__()
        if not 0 < min_sigma <= max_sigma:
            raise ValueError(
                f"Need 0 < min_sigma <= max_sigma, got {min_sigma}, {max_sigma}"
            )
        self.min_sigma, self.max_sigma = float(min_sigma), float(max_sigma)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return gaussian_blur(x, _uniform(self.min_sigma, self.max_sigma, generator))

    def extra_repr(self) -> str:
        return f"sigma={self.min_sigma}..{self.max_sigma}"


class MedianFilter(Augmentation):
    """:func:`median_filter` of a fixed size."""

    def __init__(self, size: int = 3):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd number, got {size}")
        self.size = int(size)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return median_filter(x, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class RandomDownUp(Augmentation):
    """:func:`down_up` with a factor drawn from ``factors``."""

    def __init__(self, factors: Sequence[int] = (2, 4)):
        super().__init__()
        factors = tuple(int(f) for f in factors)
        if not factors or min(factors) < 2:
            raise ValueError(f"factors must be integers >= 2, got {factors}")
        self.factors = factors

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        index = int(torch.randint(len(self.factors), (), generator=generator))
        return down_up(x, self.factors[index])

    def extra_repr(self) -> str:
        return f"factors={self.factors}"


class NoisyUpscale(Augmentation):
    """:func:`noisy_upscale` with noise σ in ``[0.01, noise_std]``, JPEG quality
    in ``[60, 90]`` and blur σ in ``[0.3, blur_sigma]``."""

    def __init__(self, noise_std: float = 0.04, blur_sigma: float = 0.8):
        super().__init__()
        self.noise_std, self.blur_sigma = float(noise_std), float(blur_sigma)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return noisy_upscale(
            x,
            _uniform(0.01, self.noise_std, generator),
            _uniform(60, 90, generator),
            _uniform(0.3, self.blur_sigma, generator),
            generator=generator,
        )

    def extra_repr(self) -> str:
        return f"noise_std<={self.noise_std}, blur_sigma<={self.blur_sigma}"


def purification_transforms() -> Dict[str, Augmentation]:
    r"""The purifications as EOT choices: ``blur`` (σ 0.5–1.5), ``median``
    (3×3), ``downup`` (×2 or ×4) and ``noisyup``."""
    return {
        "blur": RandomBlur(0.5, 1.5),
        "median": MedianFilter(3),
        "downup": RandomDownUp((2, 4)),
        "noisyup": NoisyUpscale(),
    }
