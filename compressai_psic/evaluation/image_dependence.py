r"""Image dependence of a shield: how much of protected − full all images share.

A shield that adds the same pattern or colour cast to every image is undone by
subtracting it. :class:`DifferenceStats` streams per-image differences ``D_i``
(protected − full decode) and reports the share of their energy common to all
images (:func:`common_share`), in each image's own constant RGB shift, and in
one RGB shift common to all.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "PERIODS",
    "DifferenceStats",
    "common_share",
    "periodic_amplitude",
    "periodic_peaks",
]

#: Periods (pixels) of the patterns a ×2-upsampling synthesis can leave: its
#: strides from the last stage to the latent (16 for four ×2 stages).
PERIODS = (2, 4, 8, 16)


def periodic_peaks(
    mean_abs: Tensor, periods: Sequence[int] = PERIODS
) -> Dict[int, Optional[float]]:
    r"""How much a map (the mean ``|protected − full|`` over images) repeats with
    each period: the mean spectral magnitude at the frequencies of that
    period's lattice (multiples of ``H/P`` and ``W/P``, DC excluded) divided by
    the median magnitude of all non-DC frequencies (at least ``1e-9`` of the
    largest, so that an exactly periodic map, whose median is 0, gives a large
    ratio rather than none).

    About 1 means no periodic pattern; a lattice of blotches ``P`` pixels apart
    shows as a ratio well above 1 at ``P``. ``None`` for a period that does not
    divide the map's size, and for a constant map.
    """
    if mean_abs.dim() != 2:
        raise ValueError(f"Expected an (H, W) map, got {tuple(mean_abs.shape)}")
    height, width = mean_abs.shape
    spectrum = torch.fft.fft2(mean_abs.double() - mean_abs.double().mean()).abs()
    non_dc = torch.ones_like(spectrum, dtype=torch.bool)
    non_dc[0, 0] = False
    reference = max(float(spectrum[non_dc].median()), 1e-9 * float(spectrum.max()))
    out: Dict[int, Optional[float]] = {}
    for period in periods:
        if period < 2 or height % period or width % period:
            out[int(period)] = None
            continue
        rows = torch.arange(0, height, height // period)
        cols = torch.arange(0, width, width // period)
        lattice = torch.zeros_like(non_dc)
        lattice[rows[:, None], cols[None, :]] = True
        lattice[0, 0] = False
        value = float(spectrum[lattice].mean())
        out[int(period)] = value / reference if reference > 0 else None
    return out


def periodic_amplitude(
    mean_abs: Tensor, periods: Sequence[int] = PERIODS
) -> Dict[int, Optional[float]]:
    r"""How strong a map's repeating part is, in 8-bit levels: the root mean
    square of the map keeping only the frequencies of each period's lattice
    (multiples of ``H/P`` and ``W/P``, DC excluded), times 255.

    :func:`periodic_peaks` says how much of a change repeats; this says how
    large the repeating part is, which is what a person sees: a faint grid
    and a bold one can have the same peak ratio. ``None`` for a period that
    does not divide the map's size.
    """
    if mean_abs.dim() != 2:
        raise ValueError(f"Expected an (H, W) map, got {tuple(mean_abs.shape)}")
    height, width = mean_abs.shape
    spectrum = torch.fft.fft2(mean_abs.double(), norm="ortho")
    out: Dict[int, Optional[float]] = {}
    for period in periods:
        if period < 2 or height % period or width % period:
            out[int(period)] = None
            continue
        rows = torch.arange(0, height, height // period)
        cols = torch.arange(0, width, width // period)
        energy = spectrum[rows[:, None], cols[None, :]].abs().pow(2).sum()
        energy = energy - spectrum[0, 0].abs().pow(2)
        # Parseval: the orthonormal spectrum's energy over the map's values.
        out[int(period)] = 255.0 * math.sqrt(float(energy) / (height * width))
    return out


def common_share(differences: Tensor) -> Optional[float]:
    r"""Share of the energy of per-image differences that all images share.

    With ``D_i`` the ``N`` differences (e.g. protected − full decode),
    ``N · ‖mean_i D_i‖² / Σ_i ‖D_i‖²``, pixelwise: 1 when every image gets the
    same change (a fixed pattern or colour cast), about ``1/N`` for independent
    changes, 0 for changes that cancel out over the set; ``None`` when every
    difference is zero.

    Args:
        differences: ``(N, ...)``, one difference per image
    """
    stats = DifferenceStats()
    stats.update(differences)
    return stats.result()["common_share"]


class DifferenceStats:
    r"""Streaming statistics of per-image differences ``D_i`` (protected − full).

    :meth:`result` gives

    - ``common_share``: :func:`common_share` (``None`` when the images differ
      in size);
    - ``per_image_dc_share``: the share of the energy in each image's own
      constant RGB shift (its per-channel mean);
    - ``global_offset_share``: the share in one RGB shift common to all
      images (the mean of ``D`` per channel over all pixels); a colour cast
      that a 3-number correction undoes has this near 1;
    - ``mean_offset_rgb``: that shift; ``rms``: the root mean square of ``D``;
    - ``periodic_peaks``: :func:`periodic_peaks` of the mean ``|D|`` (over
      images and channels) at :data:`PERIODS` (``None`` when sizes differ);
    - ``periodic_amplitude``: :func:`periodic_amplitude` of the same map, in
      8-bit levels.
    """

    def __init__(self) -> None:
        self.count = 0
        self.pixels = 0
        self.energy = 0.0
        self.dc_energy = 0.0
        self.channel_sum = torch.zeros(3, dtype=torch.float64)
        self.sum: Optional[Tensor] = None
        self.abs_sum: Optional[Tensor] = None
        self.same_size = True

    def update(self, differences: Tensor, full: Optional[Tensor] = None) -> None:
        """Adds ``(B, C, H, W)`` differences, or ``differences − full`` when
        ``full`` is given."""
        d = differences.detach().double().cpu()
        if full is not None:
            d = d - full.detach().double().cpu()
        if d.dim() < 2:
            raise ValueError("Expected one difference per row (N, ...)")
        d4 = d if d.dim() == 4 else d.reshape(d.size(0), 1, 1, -1)
        self.count += d.size(0)
        self.energy += float(d.pow(2).sum())
        area = d4.shape[-1] * d4.shape[-2]
        self.dc_energy += float(d4.mean(dim=(2, 3)).pow(2).sum() * area)
        if d4.size(1) == 3:
            self.channel_sum += d4.sum(dim=(0, 2, 3))
        self.pixels += d4.size(0) * area
        if self.same_size:
            magnitude = d4.abs().mean(dim=1).sum(0)
            if self.sum is None:
                self.sum, self.abs_sum = d.sum(0), magnitude
            elif self.sum.shape == d.shape[1:]:
                self.sum += d.sum(0)
                self.abs_sum += magnitude
            else:
                self.same_size, self.sum, self.abs_sum = False, None, None

    def result(self) -> Dict[str, Any]:
        if self.count == 0:
            raise ValueError("No differences were added")
        energy = self.energy
        # Shares of nothing are undefined (protected == full): None.
        common = None
        if self.sum is not None and energy:
            common = float(self.sum.pow(2).sum()) / self.count / energy
        offset = (self.channel_sum / self.pixels).tolist() if self.pixels else None
        global_share = None
        if offset is not None and energy:
            global_share = self.pixels * sum(v * v for v in offset) / energy
        size = self.count * (self.sum.numel() if self.sum is not None else 0)
        return {
            "num_images": self.count,
            "common_share": common,
            "per_image_dc_share": self.dc_energy / energy if energy else None,
            "global_offset_share": global_share,
            "mean_offset_rgb": offset,
            "rms": math.sqrt(energy / size) if size else None,
            "periodic_peaks": None
            if self.abs_sum is None
            else {
                str(k): v for k, v in periodic_peaks(self.abs_sum / self.count).items()
            },
            "periodic_amplitude": None
            if self.abs_sum is None
            else {
                str(k): v
                for k, v in periodic_amplitude(self.abs_sum / self.count).items()
            },
        }
