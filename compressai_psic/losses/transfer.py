r"""Terms that make a shield transfer to unseen VLPs and hide from people.

The UAEO loss of `"Privacy-Shielded Image Compression: Defending Against
Exploitation from Vision-Language Pretrained Models"
<https://arxiv.org/abs/2506.15201>`_ (ICML 2025) acts on the final image–text
similarity of the VLP it is trained against. What it learns transfers poorly
to VLPs of another tower family, and it may change flat regions where a person
sees it. Two terms address that:

- :func:`feature_disruption`: ``1 + cos`` between a ResNet image tower's
  mid-level features of the protected decode and of the original. Generator
  attacks that disrupt mid-layer features (CDA, NeurIPS 2019; LTP, NeurIPS
  2021; BIA, ICLR 2022) transfer across architectures better than attacks on
  the final embedding; on ViT towers such a term does not help, so only
  members with a ResNet tower (open_clip's ``ModifiedResNet``) contribute.
- :func:`masked_difference`: the change ``protected − full`` weighted by the
  inverse local activity of the original, so that the change has to live in
  texture and on edges, where it is masked, rather than on flat areas.

:func:`balanced_sum` combines an ensemble's per-member losses so that each
member's *relative* decrease counts the same: averaging raw losses lets the
member with the largest gradients dominate.

.. code-block:: none

    protected ─► preprocess ─► stem ─► layer1 ─► layer2 ─► layer3 ─┐
    original  ─► preprocess ─► stem ─► layer1 ─► layer2 ─► layer3 ─┴► 1 + cos
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..options import FEATURE_STAGES
from ..vlp import vlp_members

__all__ = [
    "FEATURE_STAGES",
    "activity_weights",
    "balanced_sum",
    "feature_disruption",
    "has_resnet_tower",
    "masked_difference",
    "periodic_energy",
    "resnet_features",
]


def has_resnet_tower(member: Any) -> bool:
    """Whether a VLP adapter's image tower is an open_clip ``ModifiedResNet``
    (has a ``stem`` and ``layer1``…``layer4``)."""
    visual = getattr(getattr(member, "model", None), "visual", None)
    return visual is not None and all(
        hasattr(visual, name) for name in ("stem", *FEATURE_STAGES)
    )


def resnet_features(member: Any, images: Tensor, stage: str = "layer3") -> Tensor:
    r"""Output of ``stage`` of a ResNet image tower for images in ``[0, 1]``
    (the adapter's own resizing and normalisation first; differentiable).

    Raises:
        ValueError: ``stage`` is not one of :data:`FEATURE_STAGES`, or the
            member has no ResNet tower
    """
    if stage not in FEATURE_STAGES:
        raise ValueError(f'Invalid stage "{stage}": use one of {list(FEATURE_STAGES)}')
    if not has_resnet_tower(member):
        raise ValueError(
            f"VLP {getattr(member, 'name', type(member).__name__)!r} has no ResNet "
            "image tower"
        )
    visual = member.model.visual
    pixels = member.preprocess(images)
    dtype = next(visual.parameters()).dtype
    out = visual.stem(pixels.to(dtype))
    for name in FEATURE_STAGES:
        out = getattr(visual, name)(out)
        if name == stage:
            break
    return out.float()


def feature_disruption(
    vlp: Any, x_hat: Tensor, target: Tensor, stage: str = "layer3"
) -> Tensor:
    r"""Mean ``1 + cos(φ(x̂), φ(x))`` over the ResNet-tower members of ``vlp``,
    ``φ`` the flattened output of ``stage``; 0 (attached to the graph) when the
    batch is empty or no member has a ResNet tower.

    The value lies in ``[0, 2]``: 2 when the features are unchanged, lower as
    the protected decode's features turn away from the original's.
    """
    zero = x_hat.sum() * 0.0
    members = [(m, w) for m, w in vlp_members(vlp) if has_resnet_tower(m)]
    if x_hat.numel() == 0 or not members:
        return zero
    total_weight = sum(w for _, w in members)
    total = zero
    for member, weight in members:
        with torch.no_grad():
            reference = resnet_features(member, target, stage).flatten(1)
        features = resnet_features(member, x_hat, stage).flatten(1)
        cosine = F.cosine_similarity(features, reference.to(features.device), dim=1)
        total = total + weight / total_weight * (1 + cosine).mean().to(x_hat.device)
    return total


def activity_weights(target: Tensor, window: int = 5, floor: float = 0.02) -> Tensor:
    r"""Per-pixel weights ``1 / (σ_local + floor)``, normalised to mean 1 per
    image: large on flat areas, small in texture and on edges.

    ``σ_local`` is the standard deviation of the grey level in a
    ``window``×``window`` neighbourhood (reflect padding).
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if floor <= 0:
        raise ValueError(f"floor must be positive, got {floor}")
    grey = target.mean(dim=1, keepdim=True)
    radius = window // 2
    mode = "reflect" if radius < min(grey.shape[-2:]) else "replicate"
    padded = F.pad(grey, (radius,) * 4, mode=mode)
    mean = F.avg_pool2d(padded, window, stride=1)
    mean_sq = F.avg_pool2d(padded * padded, window, stride=1)
    sigma = (mean_sq - mean * mean).clamp_min(0).sqrt()
    weights = 1.0 / (sigma + floor)
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def masked_difference(
    x_protected: Tensor,
    x_full: Tensor,
    target: Tensor,
    window: int = 5,
    floor: float = 0.02,
) -> Tensor:
    r"""Mean of ``w · (x̂_prot − x̂_full)²`` with ``w`` the
    :func:`activity_weights` of the original: a change on a flat area costs up
    to ``(σ_texture + floor) / floor`` times what it costs in texture.

    0 when the two decodes are not of the same images (shapes differ).
    """
    if x_protected.numel() == 0 or x_protected.shape != x_full.shape:
        return x_protected.sum() * 0.0
    weights = activity_weights(target, window, floor).detach()
    return (weights * (x_protected - x_full).pow(2)).mean()


def periodic_energy(x_protected: Tensor, x_full: Tensor, period: int = 16) -> Tensor:
    r"""Mean energy of ``x̂_prot − x̂_full`` at the frequencies of a ``period``-pixel
    lattice (multiples of ``H/period`` and ``W/period``, DC excluded), per value.

    A synthesis with ×2 upsampling stages repeats what a per-channel trigger adds
    at its strides, so a visible lattice of blotches 2, 4, 8 or 16 pixels apart
    concentrates its energy exactly there (every smaller period's lattice is a
    subset of the 16-pixel one); a change that follows the image spreads over
    all frequencies. 0 when the two decodes differ in shape or the size is not
    a multiple of ``period``.
    """
    height, width = x_protected.shape[-2:]
    if (
        x_protected.numel() == 0
        or x_protected.shape != x_full.shape
        or height % period
        or width % period
    ):
        return x_protected.sum() * 0.0
    spectrum = torch.fft.fft2(x_protected - x_full, norm="ortho").abs().pow(2)
    rows = torch.arange(0, height, height // period, device=spectrum.device)
    cols = torch.arange(0, width, width // period, device=spectrum.device)
    lattice = spectrum[..., rows[:, None], cols[None, :]]
    # Parseval (orthonormal FFT): energies per value, like an MSE.
    return (lattice.sum(dim=(-2, -1)) - lattice[..., 0, 0]).mean() / (height * width)


def balanced_sum(
    losses: Sequence[Tensor], weights: Optional[Sequence[float]] = None, eps=1e-6
) -> Tensor:
    r"""``Σ_m w_m · L_m / sg(L_m + ε) · sg(Σ_m w_m · L_m)``: the weighted mean's
    value, with each member's gradient scaled by the inverse of its own loss.

    Every member then pulls with the same *relative* strength (the gradient of
    ``log L_m``), so a member whose loss is large or steep does not decide
    alone where the ensemble's perturbation goes. ``sg`` stops gradients.
    """
    losses = list(losses)
    if not losses:
        raise ValueError("balanced_sum needs at least one loss")
    if weights is None:
        weights = [1.0 / len(losses)] * len(losses)
    if len(weights) != len(losses):
        raise ValueError(f"Need {len(losses)} weights, got {len(weights)}")
    plain = sum(w * loss for w, loss in zip(weights, losses))
    parts: List[Tensor] = [
        w * loss / (loss.detach().abs() + eps) for w, loss in zip(weights, losses)
    ]
    return sum(parts) * plain.detach()
