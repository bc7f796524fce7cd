r"""Rate and the distortion of both decode paths.

**Which sample took which path.** The losses read a shielded model's output:
``x_hat`` with its per-sample ``beta`` (1 = protected, 0 = full), one tensor each
from ``forward`` (e.g. the paper's per-sample Bernoulli(½) draw) or two lists
from ``forward_multi`` (every sample on both paths). Either path may be empty.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
import torch.nn as nn
from compressai.registry import register_criterion
from torch import Tensor

from ..models.conditions import CONDITION_NAMES

__all__ = [
    "PATHS",
    "DualPathRateDistortionLoss",
    "bpp_loss",
    "decoded_paths",
]

#: Decoding paths, in the order of ``model.forward_multi``'s default conditions.
PATHS = ("full", "protected")
#: Weightings of the UAEO terms.
WEIGHTINGS = ("fixed", "adaptive")
_METRICS = ("mse", "ms-ssim")

PathBatch = Tuple[Tensor, Tensor, Tensor]  # (x_hat, target, sample indices)


def bpp_loss(likelihoods: Mapping[str, Tensor], num_pixels: int) -> Tensor:
    """Bits per pixel of all likelihood tensors, as CompressAI's RateDistortionLoss."""
    return sum(
        torch.log(values).sum() / (-math.log(2) * num_pixels)
        for values in likelihoods.values()
    )


def _as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _beta_tensor(value: Any, device: torch.device) -> Tensor:
    """βs as a flat float tensor; ``"full"``/``"protected"`` name one β for all."""
    if isinstance(value, str):
        if value not in CONDITION_NAMES:
            raise ValueError(
                f'Invalid path "{value}": use one of {list(PATHS)} or betas 0 / 1'
            )
        value = CONDITION_NAMES[value]
    return torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)


def decoded_paths(
    output: Mapping[str, Any], target: Tensor, beta: Any = None
) -> Dict[str, PathBatch]:
    r"""Groups reconstructions by decoding path.

    Args:
        output: a shielded model's output: ``x_hat`` and ``beta`` are a tensor and
            its (B,) βs (``forward``) or two lists of them (``forward_multi``)
        target: the original images ``(B, 3, H, W)``
        beta: the βs, when ``output`` has none (e.g. hand-made reconstructions)

    Returns:
        ``{"full": (x_hat, x, index), "protected": (x_hat, x, index)}`` where
        ``index`` holds the batch position of each reconstruction's original
        (empty tensors for a path nobody took)
    """
    if beta is None:
        beta = output.get("beta")
    if beta is None:
        raise ValueError(
            'The output has no "beta": decode with a shielded model\'s forward or '
            "forward_multi, or pass beta (a (B,) tensor, 1 = protected, 0 = full)"
        )
    images, betas = _as_list(output["x_hat"]), _as_list(beta)
    if len(images) != len(betas):
        raise ValueError(f"{len(images)} reconstructions for {len(betas)} beta sets")
    batch_size = target.size(0)
    positions = torch.arange(batch_size, device=target.device)
    betas = [_beta_tensor(v, target.device) for v in betas]
    for x_hat, values in zip(images, betas):
        count = values.numel()
        if x_hat.size(0) != batch_size or count not in (1, batch_size):
            raise ValueError(
                f"x_hat has {x_hat.size(0)} images and {count} betas, target has "
                f"{batch_size}"
            )
    x_all = torch.cat(images)
    beta_all = torch.cat([v.expand(batch_size) for v in betas])
    if not bool(((beta_all == 0) | (beta_all == 1)).all()):
        raise ValueError(
            "beta must hold 0 (full) or 1 (protected) for each sample; got "
            f"{sorted(set(beta_all.tolist()))}"
        )
    index_all = positions.repeat(len(images))
    paths: Dict[str, PathBatch] = {}
    for name in PATHS:
        mask = beta_all == CONDITION_NAMES[name]
        index = index_all[mask]
        paths[name] = (x_all[mask], target[index], index)
    return paths


@register_criterion("psic-rd")
class DualPathRateDistortionLoss(nn.Module):
    r"""Rate plus the distortions of the full and the protected decodes.

    With ``d`` the per-image distortion (``255² · MSE``, or ``1 − MS-SSIM``) and
    λ the weight of the path the image was decoded on,

    .. math::

        \mathcal{L} = \text{bpp} + \frac{1}{|D|} \sum_{(i, p) \in D} \lambda_p\, d_{i,p}

    over the set ``D`` of decoded (image, path) pairs. When both paths are decoded
    for every image this is the paper's
    ``bpp + ½(λ_full·D_full + λ_prot·D_prot)``; with one path per image drawn
    with probability ½ it is an unbiased estimate of it, keeps the same scale
    whatever the split, and needs no special case when a path is empty.

    Args:
        lmbda_full: λ of the full decode (0.0011 for the paper's first rate point)
        lmbda_protected: λ of the protected decode
        metric: ``"mse"`` or ``"ms-ssim"``
        return_type: ``"all"`` for the dict, or the key of one entry

    Output entries: ``"bpp_loss"``, ``"mse_loss"`` (or ``"ms_ssim_loss"``, the
    MS-SSIM value) over all decoded images, the same per path with suffixes
    ``_full`` and ``_protected`` (0 for an empty path), ``"num_full"`` and
    ``"num_protected"`` (decoded image counts, to weight running averages),
    ``"distortion_loss"`` and ``"loss"``.
    """

    def __init__(
        self,
        lmbda_full: float = 0.0011,
        lmbda_protected: float = 0.0011,
        metric: str = "mse",
        return_type: str = "all",
    ):
        super().__init__()
        if metric not in _METRICS:
            raise ValueError(f'Invalid metric "{metric}": use one of {list(_METRICS)}')
        self.lmbda = {"full": float(lmbda_full), "protected": float(lmbda_protected)}
        self.metric = metric
        self.return_type = return_type

    def forward(
        self, output: Mapping[str, Any], target: Tensor, beta: Any = None
    ) -> Union[Dict[str, Any], Tensor]:
        batch_size, _, height, width = target.size()
        out: Dict[str, Any] = {
            "bpp_loss": bpp_loss(output["likelihoods"], batch_size * height * width)
        }
        paths = decoded_paths(output, target, beta)
        key = "mse_loss" if self.metric == "mse" else "ms_ssim_loss"
        weighted = []
        scores = []
        for name in PATHS:
            x_hat, x, _ = paths[name]
            out[f"num_{name}"] = x_hat.size(0)
            if x_hat.size(0) == 0:
                out[f"{key}_{name}"] = target.new_zeros(())
                continue
            score = self._per_image(x_hat, x)
            scores.append(score)
            out[f"{key}_{name}"] = score.mean()
            distortion = 255**2 * score if self.metric == "mse" else 1 - score
            weighted.append(self.lmbda[name] * distortion)
        if not weighted:
            raise ValueError("output holds no reconstruction on any path")
        out[key] = torch.cat(scores).mean()
        out["distortion_loss"] = torch.cat(weighted).mean()
        out["loss"] = out["bpp_loss"] + out["distortion_loss"]
        if self.return_type == "all":
            return out
        return out[self.return_type]

    def _per_image(self, x_hat: Tensor, x: Tensor) -> Tensor:
        if self.metric == "mse":
            return (x_hat - x).pow(2).flatten(1).mean(1)
        from pytorch_msssim import ms_ssim

        return ms_ssim(x_hat, x, data_range=1.0, size_average=False)
