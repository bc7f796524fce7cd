r"""The objective of a keyed shift (:mod:`compressai_psic.models.keyed`).

The synthesis, the rate path and the full decode are frozen; only the shift
``Δ(ŷ, noise)`` trains. Two keys' noises are drawn per sample, so the shift must
fool the VLPs under every key, and the two changes are compared so that one
key's change does not undo another's:

.. code-block:: none

    ŷ ─► g_s(ŷ, full) = x_f (frozen)
    ŷ, n₁ ─► x₁ = g_s(ŷ + Δ(ŷ, n₁), full)     ŷ, n₂ ─► x₂ = g_s(ŷ + Δ(ŷ, n₂), full)

    L = Σ_k [ λ_vlp·margin(EOT(x_k)) + λ_feature·(1 + cos(φ(x_k), φ(x)))
              + λ_mse·MSE(x_k, x) + λ_colour·MSE(blockmean_8(x_k), blockmean_8(x_f)) ]
        + λ_div·max(0, ⟨x₁ − x_f, x₂ − x_f⟩) + λ_vlp·λ_att·margin(EOT(x_att))

  ``x_att = g_s(ŷ₁ − Δ(ŷ₁, n₂), full)``, ``ŷ₁ = ŷ + Δ(ŷ, n₁)``: the first step of
  an attacker's inversion with a key of its own (off by default: a ``mix``
  shift has no key-free part to subtract, and for a ``concat`` shift it did not
  stop the full inversion; docs/ARCHITECTURE.md, keyed models).

- ``margin``: per VLP member, ``softplus(s·cos(f, g_own) − logsumexp_{j≠own}
  s·cos(f, g_j) + m)`` in both directions (image→text, text→image), ``s = 1/0.07``
  as in PSIC's UAEO; it stops pushing once the own caption trails the others by
  ``m``. Members are combined with :func:`~compressai_psic.losses.transfer.
  balanced_sum` (each falls at the same relative rate).
- ``feature``: disruption of the ResNet towers' ``layer3`` features
  (:func:`~compressai_psic.losses.transfer.feature_disruption`), which transfers
  to unseen VLPs better than the logits alone (LTP, NeurIPS 2021; BIA, ICLR 2022).
- ``colour``: 8×8 block means of the protected decode against the full decode's:
  what a person names (the colour of an object, the tint of a region) stays.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..vlp import vlp_members
from .psic import low_frequency_mse
from .transfer import balanced_sum, feature_disruption

__all__ = ["KeyedShieldLoss", "caption_margin"]

#: PSIC's fixed logit scale (1 / 0.07).
LOGIT_SCALE = 1.0 / 0.07


def caption_margin(
    image_embeddings: Tensor, text_embeddings: Tensor, margin: float = 2.0
) -> Tensor:
    r"""Mean ``softplus(own − logsumexp(others) + margin)`` over both directions.

    ``image_embeddings`` and ``text_embeddings`` are L2-normalised, row ``i`` of
    each a pair. Needs at least two pairs (the others).
    """
    batch = image_embeddings.size(0)
    if batch < 2 or text_embeddings.size(0) != batch:
        raise ValueError(
            f"caption_margin needs two or more pairs, got {batch} images and "
            f"{text_embeddings.size(0)} captions"
        )
    logits = LOGIT_SCALE * image_embeddings @ text_embeddings.t()
    own = logits.diagonal()
    others = logits.masked_fill(
        torch.eye(batch, dtype=torch.bool, device=logits.device), float("-inf")
    )
    to_text = F.softplus(own - others.logsumexp(1) + margin).mean()
    to_image = F.softplus(own - others.logsumexp(0) + margin).mean()
    return (to_text + to_image) / 2


class KeyedShieldLoss(nn.Module):
    """The keyed shift's loss (module docstring); returns a dict of its terms.

    Args:
        vlp: the training VLP (ensemble); never an evaluation VLP
        lambda_vlp, lambda_feature, lambda_mse, lambda_colour, lambda_diversity:
            the weights of the terms
        margin: the caption margin ``m``
        colour_kernel: block size of the colour term
        transform: the scrapers' transforms (EOT) before the VLP sees a decode
    """

    def __init__(
        self,
        vlp: Any,
        lambda_vlp: float = 1.0,
        lambda_feature: float = 1.0,
        lambda_mse: float = 300.0,
        lambda_colour: float = 3000.0,
        lambda_diversity: float = 300.0,
        margin: float = 2.0,
        colour_kernel: int = 8,
        transform: Optional[nn.Module] = None,
        lambda_attacked: float = 1.0,
    ):
        super().__init__()
        self.vlp = vlp
        self.members = vlp_members(vlp)
        self.lambda_vlp = float(lambda_vlp)
        self.lambda_feature = float(lambda_feature)
        self.lambda_mse = float(lambda_mse)
        self.lambda_colour = float(lambda_colour)
        self.lambda_diversity = float(lambda_diversity)
        self.margin = float(margin)
        self.colour_kernel = int(colour_kernel)
        self.transform = transform
        self.lambda_attacked = float(lambda_attacked)

    def forward(
        self,
        protected: Sequence[Tensor],
        full: Tensor,
        original: Tensor,
        captions: Sequence[str],
        attacked: Sequence[Tensor] = (),
    ) -> Dict[str, Tensor]:
        """``protected``: the decodes under two (or more) keys; ``full``: the full
        decode (no gradient needed); ``original``: the images; ``attacked``: what
        an attacker's own-key inversion gets back from them (VLP term only,
        weighted ``lambda_attacked``)."""
        if len(protected) < 1:
            raise ValueError("KeyedShieldLoss needs at least one protected decode")
        weights = [w for _, w in self.members]
        vlp = balanced_sum(self._margins(protected, captions), weights)
        attacked_vlp = full.new_zeros(())
        if len(attacked) and self.lambda_attacked:
            attacked_vlp = balanced_sum(self._margins(attacked, captions), weights)
        stacked = torch.cat(list(protected))
        repeats = len(protected)
        feature = feature_disruption(
            self.vlp, stacked, original.repeat(repeats, 1, 1, 1)
        )
        mse = F.mse_loss(stacked, original.repeat(repeats, 1, 1, 1))
        colour = low_frequency_mse(
            stacked, full.repeat(repeats, 1, 1, 1), self.colour_kernel
        )
        diversity = full.new_zeros(())
        if len(protected) >= 2:
            first = (protected[0] - full).flatten(1)
            second = (protected[1] - full).flatten(1)
            # The covariance of the two changes, not their cosine: a cosine's
            # gradient grows as the changes shrink and would drown every other
            # term while the shift is small.
            diversity = (first * second).mean(1).clamp_min(0).mean()
        loss = (
            self.lambda_vlp * vlp
            + self.lambda_vlp * self.lambda_attacked * attacked_vlp
            + self.lambda_feature * feature
            + self.lambda_mse * mse
            + self.lambda_colour * colour
            + self.lambda_diversity * diversity
        )
        return {
            "loss": loss,
            "vlp": vlp.detach(),
            "attacked_vlp": attacked_vlp.detach(),
            "feature": feature.detach(),
            "mse": mse.detach(),
            "colour": colour.detach(),
            "diversity": diversity.detach(),
        }

    def _margins(self, decodes: Sequence[Tensor], captions: Sequence[str]):
        """Per member, the mean caption margin of ``decodes`` after the EOT."""
        per_member = []
        for member, _ in self.members:
            with torch.no_grad():
                texts = member.encode_text(list(captions))
            total = decodes[0].new_zeros(())
            for x in decodes:
                seen = self.transform(x) if self.transform is not None else x
                total = total + caption_margin(
                    member.encode_image(seen), texts, self.margin
                )
            per_member.append(total / len(decodes))
        return per_member
