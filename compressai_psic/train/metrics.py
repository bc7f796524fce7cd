"""Epoch metrics: weighted sums of the loss terms, reduced across processes, and
their one-line summaries."""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["MetricTotals"]


#: Per-term running averages kept for the epoch summaries: term → weight key.
_AVERAGED = {
    "loss": "images",
    "rd_loss": "images",
    "bpp_loss": "images",
    "distortion_loss": "images",
    "mse_loss": "images",
    "mse_loss_full": "num_full",
    "mse_loss_protected": "num_protected",
    "ms_ssim_loss": "images",
    "ms_ssim_loss_full": "num_full",
    "ms_ssim_loss_protected": "num_protected",
    "vlp_loss": "images",
    "semantic_loss": "num_full",
    "lowfreq_loss": "num_protected",
    "common_loss": "num_protected",
    "feature_loss": "num_protected",
    "masked_loss": "num_protected",
    "periodic_loss": "num_protected",
    "clean_loss": "num_clean",
    "uncertain_loss": "num_uncertain",
    "i2t_loss": "num_uncertain",
    "t2i_loss": "num_uncertain",
    "clean_weight": "images",
    "uncertain_weight": "images",
    "protected_cosine": "num_protected",
    "original_cosine": "num_protected",
    "aux_loss": "images",
}
#: Totals summed over the epoch.
_COUNTS = ("images", "num_full", "num_protected", "num_clean", "num_uncertain")


class MetricTotals:
    """Weighted sums of the loss terms of an epoch, reducible across processes.

    Every process holds the same fixed key list, so ``all_reduce`` lines up.
    """

    def __init__(self):
        self.sums = {key: 0.0 for key in _AVERAGED}
        self.weights = {key: 0.0 for key in _AVERAGED}
        self.counts = {key: 0.0 for key in _COUNTS}

    def update(self, terms: Mapping[str, float]) -> None:
        for key in _COUNTS:
            self.counts[key] += float(terms.get(key, 0.0))
        for key, weight_key in _AVERAGED.items():
            if key in terms:
                weight = float(terms.get(weight_key, 0.0))
                self.sums[key] += float(terms[key]) * weight
                self.weights[key] += weight

    def all_reduce(self, device: torch.device) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        keys = list(_AVERAGED)
        values = (
            [self.sums[k] for k in keys]
            + [self.weights[k] for k in keys]
            + [self.counts[k] for k in _COUNTS]
        )
        packed = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(packed)
        packed = packed.tolist()
        n = len(keys)
        self.sums = dict(zip(keys, packed[:n]))
        self.weights = dict(zip(keys, packed[n : 2 * n]))
        self.counts = dict(zip(_COUNTS, packed[2 * n :]))

    def summary(self) -> Dict[str, float]:
        """Means of the terms seen, the counts, and PSNR of each path (MSE)."""
        out: Dict[str, float] = {}
        for key in _AVERAGED:
            if self.weights[key] > 0:
                out[key] = self.sums[key] / self.weights[key]
        out.update(self.counts)
        for path in ("full", "protected"):
            mse = out.get(f"mse_loss_{path}")
            if mse is not None and mse > 0:
                out[f"psnr_{path}"] = 10 * math.log10(1.0 / mse)
        return out


def _scalars(result: Mapping[str, Any], batch_size: int) -> Dict[str, float]:
    terms = {"images": float(batch_size)}
    for key, value in result.items():
        if isinstance(value, Tensor) and value.numel() == 1:
            terms[key] = float(value.detach())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            terms[key] = float(value)
    return terms


def _format(summary: Mapping[str, float]) -> str:
    order = [
        "loss",
        "bpp_loss",
        "mse_loss_full",
        "mse_loss_protected",
        "psnr_full",
        "psnr_protected",
        "ms_ssim_loss_full",
        "ms_ssim_loss_protected",
        "distortion_loss",
        "vlp_loss",
        "semantic_loss",
        "lowfreq_loss",
        "common_loss",
        "feature_loss",
        "masked_loss",
        "periodic_loss",
        "clean_loss",
        "uncertain_loss",
        "i2t_loss",
        "t2i_loss",
        "clean_weight",
        "uncertain_weight",
        "protected_cosine",
        "original_cosine",
        "aux_loss",
    ]
    # Adding 0.0 turns the -0.0 of empty terms into 0.
    parts = [f"{key}={summary[key] + 0.0:.5g}" for key in order if key in summary]
    counts = (
        f"images={summary.get('images', 0):g} "
        f"clean/uncertain={summary.get('num_clean', 0):g}/"
        f"{summary.get('num_uncertain', 0):g} "
        f"full/protected={summary.get('num_full', 0):g}/"
        f"{summary.get('num_protected', 0):g}"
    )
    return " ".join(parts + [counts])
