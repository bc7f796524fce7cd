r"""Does the protected decode keep what a person would say about the image?

A protection that fools a VLP by changing the scene (an orange diamond turned
yellow, a tint on the whole image) is not protection: a caption that names the
colour becomes false. On the scene benchmark the objects' masks are known
(:func:`~compressai_psic.datasets.scenes.render.render_object_masks`), so the
colour a person would name can be checked object by object:

.. code-block:: none

    per object: mean colour in original, full, protected
        nearest palette colour (the word a caption uses) kept?   target ≥ 99.5 %
        |mean(protected) − mean(full)|, largest channel          90 % ≤ 10 levels
    per image:  mean(protected − full) per channel               within 1 level
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["colour_shift_stats", "object_colour_stats"]


def _palette() -> np.ndarray:
    from ..datasets.scenes.spec import COLOURS

    return np.array(list(COLOURS.values()), dtype=np.float64)


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    distances = ((colours[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
    return distances.argmin(1)


def object_colour_stats(
    specs: Sequence[Any], originals: Tensor, full: Tensor, protected: Tensor
) -> Dict[str, Any]:
    """Object colours of scenes ``specs`` (rendered as ``originals``) in both
    decodes, in 8-bit levels.

    Returns:
        ``objects`` (count), ``palette_kept`` (share of objects whose nearest
        palette colour in the protected decode is the original's),
        ``palette_kept_full`` (the same for the full decode), and
        ``protected_vs_full`` (median, 90th percentile and maximum over objects
        of the largest channel's ``|mean(protected) − mean(full)|``)
    """
    from ..datasets.scenes.render import render_object_masks

    if not (len(specs) == originals.size(0) == full.size(0) == protected.size(0)):
        raise ValueError("Need one scene spec per image of every batch")
    size = originals.size(-1)
    palette = _palette()
    means: Dict[str, List[np.ndarray]] = {"original": [], "full": [], "protected": []}
    images = {"original": originals, "full": full, "protected": protected}
    for index, spec in enumerate(specs):
        masks = render_object_masks(spec, size)
        for mask in masks:
            if not mask.any():
                continue
            where = torch.from_numpy(mask)
            for name, batch in images.items():
                pixels = batch[index].detach().cpu().float()[:, where] * 255
                means[name].append(pixels.mean(1).numpy())
    if not means["original"]:
        return {"objects": 0}
    colours = {name: np.stack(values) for name, values in means.items()}
    original = _nearest(colours["original"], palette)
    shift = np.abs(colours["protected"] - colours["full"]).max(1)
    return {
        "objects": int(len(original)),
        "palette_kept": float(
            (_nearest(colours["protected"], palette) == original).mean()
        ),
        "palette_kept_full": float(
            (_nearest(colours["full"], palette) == original).mean()
        ),
        "protected_vs_full": {
            "median": float(np.median(shift)),
            "p90": float(np.percentile(shift, 90)),
            "max": float(shift.max()),
        },
    }


def colour_shift_stats(full: Tensor, protected: Tensor) -> Dict[str, Any]:
    """Per image, the mean of ``protected − full`` in each channel (8-bit levels):
    a colour cast. Returns the largest absolute value over images and channels,
    the per-channel means over images and the share of images within 1 level
    in every channel."""
    shift = ((protected - full).float().mean((2, 3)) * 255).cpu()
    largest = shift.abs().max(1).values
    return {
        "max_abs": float(largest.max()) if len(largest) else None,
        "mean_rgb": [round(float(v), 3) for v in shift.mean(0)],
        "within_1_level": float((largest <= 1.0).float().mean())
        if len(largest)
        else None,
    }
