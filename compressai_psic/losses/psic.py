r"""The whole PSIC objective, with the options that make the shield hold."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.registry import register_criterion
from torch import Tensor

from ..vlp import VLPAdapter, VLPEnsemble, vlp_members
from .rate_distortion import DualPathRateDistortionLoss, decoded_paths
from .transfer import (
    FEATURE_STAGES,
    feature_disruption,
    masked_difference,
    periodic_energy,
)
from .uaeo import UAEOLoss

__all__ = ["PSICLoss", "common_difference", "low_frequency_mse", "semantic_drift"]


def low_frequency_mse(x_hat: Tensor, target: Tensor, kernel: int) -> Tensor:
    """MSE of ``kernel``×``kernel`` block means: colour and shading, not texture.

    A global colour cast or a shift of large regions shows up here at full
    strength, fine adversarial texture hardly at all.
    """
    if x_hat.numel() == 0:
        return x_hat.sum() * 0.0
    kernel = max(1, min(kernel, x_hat.size(-2), x_hat.size(-1)))
    return F.mse_loss(F.avg_pool2d(x_hat, kernel), F.avg_pool2d(target, kernel))


def semantic_drift(vlp: Any, x_hat: Tensor, target: Tensor) -> Tensor:
    """Mean ``1 − cos(f(x̂), f(x))`` over the VLP (ensemble) members."""
    if x_hat.numel() == 0:
        return x_hat.sum() * 0.0
    total = x_hat.new_zeros(())
    for member, weight in vlp_members(vlp):
        with torch.no_grad():
            reference = member.encode_image(target).to(x_hat.device)
        cosine = (member.encode_image(x_hat).to(x_hat.device) * reference).sum(-1)
        total = total + weight * (1 - cosine).mean()
    return total


def common_difference(x_protected: Tensor, x_full: Tensor) -> Tensor:
    """Mean square of the batch mean of ``protected − full``: its common part.

    A difference shared by every image (a fixed pattern, a colour cast) keeps its
    full energy in the batch mean, one that depends on the image averages out.
    Needs both decodes of the same images (``--paths both``); 0 otherwise.
    """
    if x_protected.numel() == 0 or x_protected.shape != x_full.shape:
        return x_protected.sum() * 0.0
    return (x_protected - x_full).mean(0).pow(2).mean()


@register_criterion("psic")
class PSICLoss(nn.Module):
    r"""The PSIC objective ``bpp + distortion + λ_vlp·L_vlp``, and the terms
    that keep the shield honest.

    Combines :class:`~compressai_psic.losses.DualPathRateDistortionLoss` and
    :class:`~compressai_psic.losses.UAEOLoss`. Two optional terms (0 by default,
    as in the paper) address what the paper's objective leaves open:

    - ``λ_semantic · mean(1 − cos(f(x̂_full), f(x)))`` on the full decodes: when
      the synthesis trains (stage 2), the full path must keep its meaning, not
      only its pixels;
    - ``λ_lowfreq · 255² · MSE(pool_k(x̂_prot), pool_k(x))`` on the protected
      decodes: the protection may not live in colours or shading, which a person
      sees and a 3-number colour correction undoes; it has to live in
      image-dependent fine structure.

    - ``λ_common · 255² · mean((1/B Σ_i (x̂_prot,i − x̂_full,i))²)`` when both
      paths are decoded: the part of the change that every image shares (a
      universal pattern, which an attacker estimates and subtracts) costs; the
      protection has to depend on the image.

    - ``λ_feature · mean(1 + cos(φ(x̂_prot), φ(x)))`` with ``φ`` a mid-level
      stage of every ResNet image tower of the ensemble
      (:func:`~compressai_psic.losses.transfer.feature_disruption`): feature
      disruption, which transfers to unseen VLPs better than the final
      similarity alone;
    - ``λ_masked · 255² · mean(w · (x̂_prot − x̂_full)²)`` with ``w`` large on
      flat areas of the original and small in texture
      (:func:`~compressai_psic.losses.transfer.masked_difference`): the change
      has to hide where a person does not see it (both paths needed);
    - ``λ_periodic · 255² · E_lattice(x̂_prot − x̂_full)``, the energy of the
      change at the frequencies of the synthesis' 16-pixel stride lattice
      (:func:`~compressai_psic.losses.transfer.periodic_energy`): no visible
      grid of blotches (both paths needed).

    ``transform`` (see :class:`~compressai_psic.losses.UAEOLoss`) makes the VLP
    and feature terms an expectation over a scraper's post-processing.

    The dict holds the entries of both losses, ``"rd_loss"`` (bpp + distortion),
    ``"semantic_loss"``, ``"lowfreq_loss"``, ``"common_loss"``,
    ``"feature_loss"``, ``"masked_loss"``, ``"periodic_loss"`` and ``"loss"``.

    Args:
        vlp: the frozen VLP(s) to defend against
        lmbda_full: λ of the full decode (0.0011 in the paper)
        lmbda_protected: λ of the protected decode (0.0011)
        lmbda_vlp: weight of ``L_vlp`` (0.0009 in stage 1, 0.07 in stage 2)
        metric: ``"mse"`` or ``"ms-ssim"``
        stage: 1 (fixed weighting) or 2 (adaptive weighting)
        weighting: ``"fixed"`` or ``"adaptive"``; overrides the stage's choice
        lmbda_semantic: weight of the full-path semantic term (0)
        lmbda_lowfreq: weight of the protected low-frequency term (0)
        lowfreq_kernel: block size k of the low-frequency term (8)
        lmbda_common: weight of the common-difference term (0)
        lmbda_feature: weight of the feature-disruption term (0)
        feature_stage: ResNet stage of the feature term (``"layer3"``)
        lmbda_masked: weight of the activity-masked difference term (0)
        lmbda_periodic: weight of the stride-lattice energy term (0)
        **uaeo_kwargs: further :class:`~compressai_psic.losses.UAEOLoss`
            arguments (``transform=``, ``tau=``, …)
    """

    def __init__(
        self,
        vlp: Union[VLPAdapter, VLPEnsemble, Sequence[VLPAdapter]],
        lmbda_full: float = 0.0011,
        lmbda_protected: float = 0.0011,
        lmbda_vlp: float = 0.0009,
        metric: str = "mse",
        stage: int = 1,
        weighting: str | None = None,
        lmbda_semantic: float = 0.0,
        lmbda_lowfreq: float = 0.0,
        lowfreq_kernel: int = 8,
        lmbda_common: float = 0.0,
        lmbda_feature: float = 0.0,
        feature_stage: str = "layer3",
        lmbda_masked: float = 0.0,
        lmbda_periodic: float = 0.0,
        **uaeo_kwargs: Any,
    ):
        super().__init__()
        if stage not in (1, 2):
            raise ValueError(f"Invalid stage {stage!r}: use one of [1, 2]")
        for name, value in (
            ("lmbda_semantic", lmbda_semantic),
            ("lmbda_lowfreq", lmbda_lowfreq),
            ("lmbda_common", lmbda_common),
            ("lmbda_feature", lmbda_feature),
            ("lmbda_masked", lmbda_masked),
            ("lmbda_periodic", lmbda_periodic),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if feature_stage not in FEATURE_STAGES:
            raise ValueError(
                f'Invalid feature_stage "{feature_stage}": use one of '
                f"{list(FEATURE_STAGES)}"
            )
        if lowfreq_kernel < 1:
            raise ValueError(f"lowfreq_kernel must be >= 1, got {lowfreq_kernel}")
        if weighting is None:
            weighting = "fixed" if stage == 1 else "adaptive"
        self.stage = stage
        self.lmbda_vlp = float(lmbda_vlp)
        self.lmbda_semantic = float(lmbda_semantic)
        self.lmbda_lowfreq = float(lmbda_lowfreq)
        self.lowfreq_kernel = int(lowfreq_kernel)
        self.lmbda_common = float(lmbda_common)
        self.lmbda_feature = float(lmbda_feature)
        self.feature_stage = feature_stage
        self.lmbda_masked = float(lmbda_masked)
        self.lmbda_periodic = float(lmbda_periodic)
        self.rate_distortion = DualPathRateDistortionLoss(
            lmbda_full, lmbda_protected, metric
        )
        self.uaeo = UAEOLoss(vlp, weighting=weighting, **uaeo_kwargs)

    @property
    def vlp(self) -> Union[VLPAdapter, VLPEnsemble]:
        return self.uaeo.vlp

    def forward(
        self,
        output: Mapping[str, Any],
        target: Tensor,
        texts: Sequence[str],
        beta: Any = None,
    ) -> Dict[str, Any]:
        out = dict(self.rate_distortion(output, target, beta))
        out["rd_loss"] = out.pop("loss")
        out.update(self.uaeo(output, target, texts, beta))
        paths = decoded_paths(output, target, beta)
        zero = out["rd_loss"] * 0.0
        semantic = lowfreq = common = feature = masked = periodic = zero
        if self.lmbda_semantic > 0:
            semantic = semantic_drift(self.vlp, *paths["full"][:2])
        if self.lmbda_lowfreq > 0:
            x_prot, x_orig, _ = paths["protected"]
            lowfreq = 255**2 * low_frequency_mse(x_prot, x_orig, self.lowfreq_kernel)
        if self.lmbda_feature > 0:
            x_prot, x_orig, _ = paths["protected"]
            seen = x_prot
            if self.uaeo.transform is not None and x_prot.numel():
                seen = self.uaeo.transform(x_prot)
            feature = feature_disruption(self.vlp, seen, x_orig, self.feature_stage)
        # The terms of protected − full need both decodes of the same images.
        pair = None
        if max(self.lmbda_common, self.lmbda_masked, self.lmbda_periodic) > 0:
            pair = self._both_paths(output, beta)
        if pair is not None:
            if self.lmbda_common > 0:
                common = 255**2 * common_difference(*pair)
            if self.lmbda_masked > 0:
                masked = 255**2 * masked_difference(*pair, target)
            if self.lmbda_periodic > 0:
                periodic = 255**2 * periodic_energy(*pair)
        out["semantic_loss"] = semantic
        out["lowfreq_loss"] = lowfreq
        out["common_loss"] = common
        out["feature_loss"] = feature
        out["masked_loss"] = masked
        out["periodic_loss"] = periodic
        out["loss"] = (
            out["rd_loss"]
            + self.lmbda_vlp * out["vlp_loss"]
            + self.lmbda_semantic * semantic
            + self.lmbda_lowfreq * lowfreq
            + self.lmbda_common * common
            + self.lmbda_feature * feature
            + self.lmbda_masked * masked
            + self.lmbda_periodic * periodic
        )
        return out

    @staticmethod
    def _both_paths(output: Mapping[str, Any], beta: Any):
        """``(protected, full)`` decodes of the same images, or ``None`` when the
        output does not hold both."""
        images, betas = output["x_hat"], output.get("beta") if beta is None else beta
        if not isinstance(images, (list, tuple)):
            return None
        by_path = {}
        for x_hat, values in zip(images, betas):
            values = torch.as_tensor(values).reshape(-1)
            if bool((values == values[0]).all()):
                by_path.setdefault(float(values[0]), x_hat)
        if 0.0 not in by_path or 1.0 not in by_path:
            return None
        return by_path[1.0], by_path[0.0]
