r"""Differentiable scraper transforms: expectation over transformations in training.

A protected decode is published; a scraper may re-save it as JPEG, resize it or
correct its colours before a VLP reads it (see the threat model in the project's
SPEC). Protection that only holds on the exact decoded pixels is brittle, so
training can average the VLP loss over random transformations of the protected
decode (expectation over transformations, EOT). For that the transformations
must pass gradients, which is what this module provides, on ``(B, 3, H, W)``
tensors in ``[0, 1]`` on any device:

- :func:`diff_jpeg`: JPEG compression as libjpeg does it (JFIF YCbCr, optional
  4:2:0 chroma subsampling with box-filter downsampling and bilinear "fancy"
  upsampling, 8×8 orthonormal DCT, the IJG quantisation tables scaled by the
  quality), with the rounding of the quantised coefficients replaced by a
  straight-through estimator (``"ste"``: exact rounding forward, identity
  gradient) or the cubic approximation ``r + (x − r)³`` (``"cubic"``, smooth
  forward). Quality may differ per image. It is close to PIL's real JPEG at the
  same quality (tests: well above 30 dB PSNR against PIL on smooth images);
- :func:`resize`: down- (and optionally back up-) sampling with ``area``,
  ``bilinear`` or ``bicubic`` filters (antialiased when shrinking);
- :func:`grey_world`: per-image, per-channel mean/std normalisation, the blind
  colour correction; by default every channel is mapped to the image's mean
  over channels of the channel means and standard deviations (a neutral target
  that keeps brightness and contrast and removes a colour cast), or to given
  target statistics;
- modules around them (:class:`DiffJPEG`, :class:`RandomJPEG`,
  :class:`RandomResize`, :class:`GreyWorld`, :class:`Identity`) and
  :class:`RandomScraperTransform`, which draws one of them per image with a
  :class:`torch.Generator` (reproducible, independent of the global RNG).

Every module takes ``forward(x, generator=None)``; deterministic ones ignore the
generator. Random parameters are drawn on the CPU and moved to ``x``'s device,
so a CPU generator serves CUDA inputs too.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CHROMA_QUANT_TABLE",
    "LUMA_QUANT_TABLE",
    "ROUNDING_MODES",
    "Augmentation",
    "DiffJPEG",
    "GreyWorld",
    "Identity",
    "RandomJPEG",
    "RandomResize",
    "RandomScraperTransform",
    "dct_matrix",
    "default_scraper_transforms",
    "diff_jpeg",
    "differentiable_round",
    "grey_world",
    "jpeg_quant_tables",
    "resize",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]

#: Luminance quantisation table of the JPEG standard (ITU-T T.81, Annex K.1).
LUMA_QUANT_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
#: Chrominance quantisation table of the JPEG standard (ITU-T T.81, Annex K.1).
CHROMA_QUANT_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4

#: Rounding of the quantised DCT coefficients in :func:`diff_jpeg`.
ROUNDING_MODES = ("ste", "cubic")

_RESIZE_MODES = ("area", "bilinear", "bicubic")

Quality = Union[int, float, Sequence[float], Tensor]


def _check_images(x: Tensor) -> None:
    if x.dim() != 4 or x.size(1) != 3:
        raise ValueError(f"Expected (B, 3, H, W) images, got {tuple(x.shape)}")


# ------------------------------------------------------------------------- rounding


def differentiable_round(x: Tensor, mode: str = "ste") -> Tensor:
    r"""Rounds to integers with a usable gradient.

    ``"ste"``: exact rounding forward, identity backward (straight-through).
    ``"cubic"``: ``round(x) + (x − round(x))³`` forward and backward, a smooth
    approximation whose error is at most 0.125.
    """
    rounded = torch.round(x)
    if mode == "ste":
        return x + (rounded - x).detach()
    if mode == "cubic":
        rounded = rounded.detach()
        return rounded + (x - rounded) ** 3
    raise ValueError(f'Unknown rounding "{mode}": use one of {list(ROUNDING_MODES)}')


# ---------------------------------------------------------------------------- JPEG


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    r"""JFIF YCbCr (full range) of RGB; works on any scale, chroma offset
    ``0.5 × scale`` is *not* added (centred chroma)."""
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], 1)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    r"""Inverse of :func:`rgb_to_ycbcr` (centred chroma)."""
    y, cb, cr = x.unbind(1)
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.stack([r, g, b], 1)


def dct_matrix(
    size: int = 8,
    device: Union[str, torch.device, None] = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Orthonormal DCT-II matrix ``C`` (``C @ v`` transforms a column ``v``).

    For 8×8 blocks ``C X Cᵀ`` equals JPEG's forward DCT, whose coefficients the
    quantisation tables divide.
    """
    n = torch.arange(size, dtype=torch.float64)
    k = n.view(-1, 1)
    matrix = torch.cos(math.pi * (2 * n + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix.to(device=device, dtype=dtype)


def _as_qualities(quality: Quality, batch: int) -> Tensor:
    q = torch.as_tensor(quality, dtype=torch.float64).detach().cpu().flatten()
    if q.numel() == 1:
        q = q.expand(batch)
    if q.numel() != batch:
        raise ValueError(f"Need one quality or {batch}, got {q.numel()}")
    if bool(((q < 1) | (q > 100)).any()):
        raise ValueError(f"JPEG quality must be in 1..100, got {q.tolist()}")
    return q


def jpeg_quant_tables(quality: Quality) -> Tuple[Tensor, Tensor]:
    r"""Luma and chroma quantisation tables at IJG ``quality`` (1..100).

    The standard tables scaled as libjpeg (and so PIL) does: ``scale = 5000 / q``
    below 50, ``200 − 2q`` from 50, ``⌊(base · scale + 50) / 100⌋`` clamped to
    1..255. A sequence of qualities gives ``(N, 8, 8)`` tables, a single one
    ``(8, 8)``.
    """
    single = torch.as_tensor(quality).dim() == 0
    q = _as_qualities(quality, torch.as_tensor(quality).numel()).floor()
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q).view(-1, 1, 1)
    tables = []
    for base in (LUMA_QUANT_TABLE, CHROMA_QUANT_TABLE):
        base_t = torch.tensor(base, dtype=torch.float64)
        table = torch.floor((base_t * scale + 50.0) / 100.0).clamp(1, 255)
        tables.append(table[0] if single else table)
    return tables[0].float(), tables[1].float()


def _blocks(plane: Tensor) -> Tensor:
    # (B, H, W) -> (B, H/8, W/8, 8, 8)
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _unblocks(blocks: Tensor) -> Tensor:
    b, hb, wb = blocks.shape[:3]
    return blocks.permute(0, 1, 3, 2, 4).reshape(b, hb * 8, wb * 8)


def _code_plane(plane: Tensor, table: Tensor, rounding: str) -> Tensor:
    # plane: (B, H, W) centred values (0..255 - 128), H and W multiples of 8;
    # table: (B, 8, 8).
    dct = dct_matrix(8, plane.device, plane.dtype)
    blocks = _blocks(plane)
    coefficients = dct @ blocks @ dct.t()
    table = table.to(plane.device, plane.dtype).view(-1, 1, 1, 8, 8)
    quantised = differentiable_round(coefficients / table, rounding) * table
    return _unblocks(dct.t() @ quantised @ dct)


def diff_jpeg(
    x: Tensor,
    quality: Quality = 75,
    chroma_subsampling: bool = True,
    rounding: str = "ste",
    quantise_output: bool = True,
) -> Tensor:
    r"""Differentiable JPEG compression and decompression of ``(B, 3, H, W)``
    images in ``[0, 1]``.

    Args:
        x: the images
        quality: IJG quality 1..100, one for all images or one per image
        chroma_subsampling: 4:2:0 (PIL's default), else 4:4:4
        rounding: rounding of the quantised coefficients, see
            :func:`differentiable_round`
        quantise_output: round the decoded pixels to 8 bits (straight-through),
            as a decoded file is

    Returns:
        the decoded images, same shape, in ``[0, 1]``
    """
    _check_images(x)
    batch, _, height, width = x.shape
    luma_table, chroma_table = jpeg_quant_tables(_as_qualities(quality, batch))
    block = 16 if chroma_subsampling else 8
    pad = (0, (-width) % block, 0, (-height) % block)
    pixels = x.clamp(0, 1) * 255.0
    if any(pad):
        pixels = F.pad(pixels, pad, mode="replicate")
    ycc = rgb_to_ycbcr(pixels)
    luma = _code_plane(ycc[:, 0] - 128.0, luma_table, rounding) + 128.0
    chroma = ycc[:, 1:]
    if chroma_subsampling:
        chroma = F.avg_pool2d(chroma, 2)
    chroma = torch.stack(
        [_code_plane(chroma[:, c], chroma_table, rounding) for c in range(2)], 1
    )
    # libjpeg range-limits every decoded plane to 8-bit samples.
    chroma = chroma.clamp(-128, 127)
    if chroma_subsampling:
        chroma = F.interpolate(
            chroma, scale_factor=2, mode="bilinear", align_corners=False
        )
    luma = luma.clamp(0, 255)
    rgb = ycbcr_to_rgb(torch.cat([luma[:, None], chroma], 1))
    rgb = rgb[..., :height, :width].clamp(0, 255)
    if quantise_output:
        rgb = differentiable_round(rgb, "ste")
    return rgb / 255.0


# -------------------------------------------------------------------------- resize


def resize(
    x: Tensor, scale: float, mode: str = "bilinear", restore_size: bool = True
) -> Tensor:
    r"""Resizes by ``scale`` (antialiased when shrinking), differentiably.

    Args:
        x: ``(B, C, H, W)`` images
        scale: side ratio of the resized image (> 0)
        mode: ``"area"``, ``"bilinear"`` or ``"bicubic"``
        restore_size: resize back to ``(H, W)`` bilinearly afterwards, so the
            result keeps the input's shape (the detail lost stays lost)
    """
    if mode not in _RESIZE_MODES:
        raise ValueError(f'Unknown resize mode "{mode}": use one of {_RESIZE_MODES}')
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    height, width = x.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return x
    if mode == "area":
        if size[0] > height or size[1] > width:
            raise ValueError("area resizing only shrinks; use bilinear to enlarge")
        out = F.adaptive_avg_pool2d(x, size)
    else:
        out = F.interpolate(
            x,
            size=size,
            mode=mode,
            align_corners=False,
            antialias=size[0] < height or size[1] < width,
        )
    if restore_size:
        out = F.interpolate(
            out, size=(height, width), mode="bilinear", align_corners=False
        )
    return out.clamp(0, 1) if mode == "bicubic" else out


# ---------------------------------------------------------------------- grey world


def grey_world(
    x: Tensor,
    target_mean: Optional[Union[Sequence[float], Tensor]] = None,
    target_std: Optional[Union[Sequence[float], Tensor]] = None,
    eps: float = 1e-3,
    clamp: bool = True,
) -> Tensor:
    r"""Per-image, per-channel mean/std normalisation (blind colour correction).

    Each channel ``c`` of each image becomes
    ``(x_c − μ_c) / (σ_c + eps) · σ*_c + μ*_c``, with ``μ_c`` and ``σ_c`` its own
    spatial mean and standard deviation. The targets ``μ*`` and ``σ*`` default to
    the image's mean over channels of ``μ_c`` and of ``σ_c``: a neutral (grey)
    target, the same for all channels, that keeps the image's brightness and
    contrast and removes any per-channel gain and offset (a colour cast). Given
    targets (three values, or ``(B, 3)``) map every image to those statistics,
    e.g. the typical channel statistics of natural images.

    Differentiable; ``clamp`` clips the result to ``[0, 1]``.
    """
    _check_images(x)
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    if target_mean is None:
        target_mean = mean.mean(dim=1, keepdim=True)
    else:
        target_mean = torch.as_tensor(target_mean, dtype=x.dtype, device=x.device)
        target_mean = target_mean.reshape(-1, 3, 1, 1)
    if target_std is None:
        target_std = std.mean(dim=1, keepdim=True)
    else:
        target_std = torch.as_tensor(target_std, dtype=x.dtype, device=x.device)
        target_std = target_std.reshape(-1, 3, 1, 1)
    out = (x - mean) / (std + eps) * target_std + target_mean
    return out.clamp(0, 1) if clamp else out


# ------------------------------------------------------------------------- modules


class Augmentation(nn.Module):
    r"""Base of the transforms here: ``forward(x, generator=None)`` maps
    ``(B, 3, H, W)`` images in ``[0, 1]`` to images of the same shape."""

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        raise NotImplementedError


class Identity(Augmentation):
    """Returns its input (the "no transformation" choice)."""

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return x


class DiffJPEG(Augmentation):
    """:func:`diff_jpeg` at a fixed quality."""

    def __init__(
        self, quality: float = 75, chroma_subsampling: bool = True, rounding="ste"
    ):
        super().__init__()
        _as_qualities(quality, 1)
        self.quality = quality
        self.chroma_subsampling = chroma_subsampling
        self.rounding = rounding

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return diff_jpeg(x, self.quality, self.chroma_subsampling, self.rounding)

    def extra_repr(self) -> str:
        return f"quality={self.quality}, rounding={self.rounding!r}"


class RandomJPEG(Augmentation):
    """:func:`diff_jpeg` with an integer quality drawn uniformly per image from
    ``[min_quality, max_quality]``."""

    def __init__(
        self,
        min_quality: int = 50,
        max_quality: int = 95,
        chroma_subsampling: bool = True,
        rounding: str = "ste",
    ):
        super().__init__()
        if not 1 <= min_quality <= max_quality <= 100:
            raise ValueError(
                f"Need 1 <= min_quality <= max_quality <= 100, got "
                f"{min_quality}, {max_quality}"
            )
        self.min_quality = int(min_quality)
        self.max_quality = int(max_quality)
        self.chroma_subsampling = chroma_subsampling
        self.rounding = rounding

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        quality = torch.randint(
            self.min_quality, self.max_quality + 1, (x.size(0),), generator=generator
        )
        return diff_jpeg(x, quality, self.chroma_subsampling, self.rounding)

    def extra_repr(self) -> str:
        return f"quality={self.min_quality}..{self.max_quality}"


class RandomResize(Augmentation):
    """:func:`resize` down by a scale drawn uniformly from
    ``[min_scale, max_scale]`` with a filter drawn from ``modes``, then back to
    the input size (one draw per call)."""

    def __init__(
        self,
        min_scale: float = 0.5,
        max_scale: float = 1.0,
        modes: Sequence[str] = ("bilinear", "area"),
    ):
        super().__init__()
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(
                f"Need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}"
            )
        modes = tuple(modes)
        if not modes or any(m not in _RESIZE_MODES for m in modes):
            raise ValueError(f"modes must be among {_RESIZE_MODES}, got {modes}")
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.modes = modes

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        u = float(torch.rand((), generator=generator))
        scale = self.min_scale + (self.max_scale - self.min_scale) * u
        mode = self.modes[int(torch.randint(len(self.modes), (), generator=generator))]
        return resize(x, scale, mode, restore_size=True)

    def extra_repr(self) -> str:
        return f"scale={self.min_scale}..{self.max_scale}, modes={self.modes}"


class GreyWorld(Augmentation):
    """:func:`grey_world`, to a neutral target or to fixed channel statistics."""

    def __init__(
        self,
        target_mean: Optional[Sequence[float]] = None,
        target_std: Optional[Sequence[float]] = None,
        eps: float = 1e-3,
    ):
        super().__init__()
        for name, value in (("target_mean", target_mean), ("target_std", target_std)):
            tensor = None if value is None else torch.as_tensor(value).float()
            if tensor is not None and tensor.numel() != 3:
                raise ValueError(f"{name} needs 3 values, got {tensor.numel()}")
            self.register_buffer(name, tensor, persistent=False)
        self.eps = eps

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return grey_world(x, self.target_mean, self.target_std, self.eps)


def default_scraper_transforms() -> Dict[str, Augmentation]:
    r"""The choices of a default :class:`RandomScraperTransform`: identity,
    JPEG at quality 50..95, resizing by 0.5..1 (bilinear or area) and back,
    and neutral grey world."""
    return {
        "identity": Identity(),
        "jpeg": RandomJPEG(50, 95),
        "resize": RandomResize(0.5, 1.0),
        "greyworld": GreyWorld(),
    }


class RandomScraperTransform(Augmentation):
    r"""One randomly chosen transform per image: EOT over a scraper's pipeline.

    Every image of a batch draws one of ``transforms`` (with probabilities
    proportional to ``weights``); the images that drew the same transform go
    through it together (it draws its own random parameters), and the batch is
    put back in order. Gradients flow through whichever transform each image got.

    Args:
        transforms: named :class:`Augmentation` modules (default
            :func:`default_scraper_transforms`); they must keep the image size
        weights: relative probability of each (default uniform)
        seed: seeds a private :class:`torch.Generator` (default: the global RNG),
            used when ``forward`` gets no generator

    After a call, ``last_choices`` holds the name drawn for each image.
    """

    def __init__(
        self,
        transforms: Optional[Mapping[str, Augmentation]] = None,
        weights: Optional[Sequence[float]] = None,
        seed: Optional[int] = None,
    ):
        super().__init__()
        transforms = default_scraper_transforms() if transforms is None else transforms
        if not transforms:
            raise ValueError("RandomScraperTransform needs at least one transform")
        self.transforms = nn.ModuleDict(dict(transforms))
        weights = [1.0] * len(self.transforms) if weights is None else list(weights)
        if len(weights) != len(self.transforms) or min(weights) < 0:
            raise ValueError(
                f"Need {len(self.transforms)} non-negative weights, got {weights}"
            )
        if sum(weights) <= 0:
            raise ValueError("weights must have a positive sum")
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.generator: Optional[torch.Generator] = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))
        self.last_choices: list = []

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self.transforms)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_images(x)
        generator = generator if generator is not None else self.generator
        choices = torch.multinomial(
            self.weights, x.size(0), replacement=True, generator=generator
        )
        names = self.names
        self.last_choices = [names[int(c)] for c in choices]
        parts, order = [], []
        for index, name in enumerate(names):
            members = (choices == index).nonzero().flatten()
            if members.numel() == 0:
                continue
            picked = x[members.to(x.device)]
            out = self.transforms[name](picked, generator=generator)
            if out.shape != picked.shape:
                raise ValueError(
                    f'Transform "{name}" changed the shape {tuple(picked.shape)} '
                    f"to {tuple(out.shape)}"
                )
            parts.append(out)
            order.append(members)
        order_t = torch.cat(order)
        inverse = torch.empty_like(order_t)
        inverse[order_t] = torch.arange(order_t.numel())
        return torch.cat(parts)[inverse.to(x.device)]

    def extra_repr(self) -> str:
        return f"weights={self.weights.tolist()}"
