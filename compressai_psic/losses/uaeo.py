r"""The Uncertainty-Aware Encryption-Oriented (UAEO) loss of
`"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_,
ICML 2025.

.. code-block:: none

    originals U, captions V ──► evidential split ──► clean pairs │ uncertain pairs
                                                       │               │
    protected decodes ──(transform)──► VLP ──► P ──► 1 + cos(p, v)   CE to the
                                                                   least-evidence
                                                                   match (i2t, t2i)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.registry import register_criterion
from torch import Tensor

from ..options import DEFAULT_TAU, ENSEMBLE_MODES  # noqa: F401  (re-exported)
from ..vlp import VLPAdapter, VLPEnsemble, vlp_members
from .rate_distortion import decoded_paths
from .transfer import balanced_sum

__all__ = [
    "DEFAULT_LOGIT_SCALE",
    "DEFAULT_TAU",
    "ENSEMBLE_MODES",
    "WEIGHTINGS",
    "UAEOLoss",
    "adaptive_weights",
    "evidential_split",
]

#: Logit scale s = 1/0.07 of the paper (fixed, not the VLP's learned one).
DEFAULT_LOGIT_SCALE = 1.0 / 0.07
#: Weightings of the UAEO terms.
WEIGHTINGS = ("fixed", "adaptive")


@torch.no_grad()
def evidential_split(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    tau: float = DEFAULT_TAU,
    exclude_self: bool = True,
) -> Dict[str, Tensor]:
    r"""Evidence, Dirichlet parameters, clean/uncertain split and soft labels.

    From the VLP's embeddings of the *original* images ``U`` and captions ``V``
    (``(n, D)`` each, row ``i`` a pair):

    - ``S = s·UVᵀ``, ``R = ½(S + Sᵀ)``, evidence ``E = exp(tanh(R)/τ)``;
    - ``α_i2t = E + 1``, ``α_t2i = Eᵀ + 1``;
    - normalised evidence ``N``: rows of ``E + Eᵀ`` divided by their sums;
    - pair ``i`` is *clean* when ``argmax_j N_ij = i``, *uncertain* otherwise;
    - soft labels of uncertain pairs: image label ``argmin_j α_i2t[i, j]`` (the
      least-evidence caption), caption label ``argmin_j α_t2i[i, j]`` (the
      least-evidence image).

    With ``exclude_self`` the arg-min skips ``j = i``: the labels pull the
    protected image *away* from its own caption, which a label equal to ``i``
    would undo. An uncertain pair always has another candidate, since a batch of
    one is always clean.

    Returns:
        dict with ``"similarity"`` (S), ``"evidence"`` (E), ``"alpha_i2t"``,
        ``"alpha_t2i"``, ``"normalized_evidence"`` (N), ``"clean"`` (bool, n),
        ``"image_labels"`` and ``"text_labels"`` (long, n; −1 for clean pairs)
    """
    if image_embeds.shape != text_embeds.shape or image_embeds.dim() != 2:
        raise ValueError(
            f"Expected image and text embeddings of the same shape (n, D), got "
            f"{tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    u = F.normalize(image_embeds.float(), dim=-1)
    v = F.normalize(text_embeds.float(), dim=-1)
    n = u.size(0)
    similarity = logit_scale * u @ v.t()
    evidence = torch.exp(torch.tanh(0.5 * (similarity + similarity.t())) / tau)
    alpha_i2t = evidence + 1
    alpha_t2i = evidence.t() + 1
    joint = evidence + evidence.t()
    normalized = joint / joint.sum(dim=1, keepdim=True)
    index = torch.arange(n, device=u.device)
    clean = normalized.argmax(dim=1) == index
    if exclude_self and n > 1:
        diagonal = torch.eye(n, dtype=torch.bool, device=u.device)
        image_labels = alpha_i2t.masked_fill(diagonal, math.inf).argmin(dim=1)
        text_labels = alpha_t2i.masked_fill(diagonal, math.inf).argmin(dim=1)
    else:
        image_labels = alpha_i2t.argmin(dim=1)
        text_labels = alpha_t2i.argmin(dim=1)
    return {
        "similarity": similarity,
        "evidence": evidence,
        "alpha_i2t": alpha_i2t,
        "alpha_t2i": alpha_t2i,
        "normalized_evidence": normalized,
        "clean": clean,
        "image_labels": image_labels.masked_fill(clean, -1),
        "text_labels": text_labels.masked_fill(clean, -1),
    }


def adaptive_weights(
    losses: Sequence[Tensor], present: Sequence[bool], eps: float = 1e-4
) -> List[Tensor]:
    r"""Detached inverse-loss weights ``w_k ∝ 1/(L_k + ε)``, normalised to sum 1.

    Only the terms that exist in the batch (``present``) are weighted; an absent
    term gets weight 0 instead of the near-1 weight its zero value would earn.
    Every loss must be non-negative.
    """
    zero = losses[0].detach().new_zeros(())
    inverse = [
        1.0 / (loss.detach().clamp_min(0) + eps) if here else zero
        for loss, here in zip(losses, present)
    ]
    total = sum(inverse)
    if not any(present):
        return [zero for _ in losses]
    return [w / total for w in inverse]


class UAEOLoss(nn.Module):
    r"""Uncertainty-Aware Encryption-Oriented loss on the protected decode.

    For the images decoded on the protected path (with their captions), the frozen
    VLP embeds the original images ``U``, the captions ``V`` and the protected
    reconstructions ``P``. :func:`evidential_split` on ``(U, V)`` sorts the pairs:

    - clean pairs (the VLP matches them): ``L_clean`` = mean of
      ``cosine_offset + cos(p_i, v_i)``, which pushes the protected image away
      from its caption;
    - uncertain pairs: ``L_i2t`` = cross-entropy of logits ``s·p_i·Vᵀ`` towards
      the image label, ``L_t2i`` = cross-entropy of logits ``s·v_i·Pᵀ`` towards
      the caption label, and ``L_unc = ½(L_i2t + L_t2i)``.

    **Index space.** Split, labels, caption keys (i2t) and image keys (t2i) all
    refer to the same set: the samples that have a protected reconstruction, in
    batch order (every sample when both paths are decoded). A label is thus
    always a valid key index, which fixes the reference implementation's
    mismatch between batch-wide keys and subset labels.

    **Weighting.** ``"fixed"`` (stage 1): ``L_vlp = clean_weight·L_clean +
    uncertain_weight·L_unc`` (10 and 1 in the paper). ``"adaptive"`` (stage 2):
    ``w_c ∝ 1/(L_clean + ε)``, ``w_u ∝ 1/(L_unc + ε)``, normalised to sum 1 and
    detached: they rescale the two gradients (``w_c∇L_clean + w_u∇L_unc``) and
    are not objectives themselves; left attached, the sum would turn into the
    harmonic mean of the terms and train something else. The paper's raw cosine
    can be negative, which makes ``1/L`` change sign and explode around 0 (a
    negative weight turns descent on a term into ascent); we use
    ``1 + cos ∈ [0, 2]`` (``cosine_offset = 1``), which has the same gradient as
    the cosine, so stage 1 trains exactly as the paper's while both adaptive
    terms stay non-negative and the weights lie in [0, 1]. When a term is near 0
    its weight tends to 1 and ``L_vlp`` stays bounded by ``2·min(L_clean,
    L_unc) + O(ε)``; a term absent from the batch (no clean or no uncertain
    pair) gets weight 0 and the other weight 1.

    **Degenerate batches** are well defined: no protected sample gives 0 (still
    attached to the graph), a batch of one is always clean, all-clean or
    all-uncertain batches use the one existing term.

    With a :class:`~compressai_psic.vlp.VLPEnsemble` every term is computed per
    member and averaged with the ensemble weights. With ``ensemble="balanced"``
    the members' ``vlp_loss`` are combined by
    :func:`~compressai_psic.losses.transfer.balanced_sum` instead: the same
    value, but each member's gradient is divided by its own loss, so every
    member falls rather than the one with the steepest loss (the other entries
    stay plain weighted means).

    Args:
        vlp: a :class:`~compressai_psic.vlp.VLPAdapter`, an ensemble, or a list
        weighting: ``"fixed"`` or ``"adaptive"``
        logit_scale: s (1/0.07)
        tau: evidence temperature τ (0.1)
        clean_weight: weight of ``L_clean`` with fixed weighting (10)
        uncertain_weight: weight of ``L_unc`` with fixed weighting (1)
        cosine_offset: constant added to the clean cosine (1; 0 gives the paper's
            raw cosine, allowed with fixed weighting only)
        eps: ε of the adaptive weights
        exclude_self: see :func:`evidential_split`
        transform: applied to the protected reconstructions before the VLP sees
            them (e.g. :class:`~compressai_psic.transforms.RandomScraperTransform`):
            the loss is then an expectation over what a scraper would do to the
            published image (JPEG, resizing, colour correction), not just over
            the image itself. ``None`` (default, the paper) uses them as decoded.
        ensemble: ``"mean"`` (default) or ``"balanced"``, see above

    Output entries: ``"vlp_loss"``, ``"clean_loss"``, ``"uncertain_loss"``,
    ``"i2t_loss"``, ``"t2i_loss"``, ``"clean_weight"``, ``"uncertain_weight"``,
    ``"num_clean"``, ``"num_uncertain"``, ``"protected_cosine"`` and
    ``"original_cosine"`` (mean cosine of each protected / original image with
    its caption, detached), and ``"split"``: one dict per VLP with ``"index"``
    (batch positions), ``"clean"``, ``"image_labels"``, ``"text_labels"``,
    ``"alpha_i2t"``, ``"alpha_t2i"`` and ``"normalized_evidence"``.
    """

    def __init__(
        self,
        vlp: Union[VLPAdapter, VLPEnsemble, Sequence[VLPAdapter]],
        weighting: str = "fixed",
        logit_scale: float = DEFAULT_LOGIT_SCALE,
        tau: float = DEFAULT_TAU,
        clean_weight: float = 10.0,
        uncertain_weight: float = 1.0,
        cosine_offset: float = 1.0,
        eps: float = 1e-4,
        exclude_self: bool = True,
        transform: Optional[Callable[[Tensor], Tensor]] = None,
        ensemble: str = "mean",
    ):
        super().__init__()
        if ensemble not in ENSEMBLE_MODES:
            raise ValueError(
                f'Invalid ensemble "{ensemble}": use one of {list(ENSEMBLE_MODES)}'
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(
                f'Invalid weighting "{weighting}": use one of {list(WEIGHTINGS)}'
            )
        if weighting == "adaptive" and cosine_offset < 1:
            raise ValueError(
                "Adaptive weighting needs a non-negative clean term: cosine_offset "
                f"must be >= 1, got {cosine_offset}"
            )
        if isinstance(vlp, (list, tuple)):
            vlp = VLPEnsemble(vlp)
        vlp_members(vlp)  # validates the type
        self.vlp = vlp
        self.weighting = weighting
        self.logit_scale = float(logit_scale)
        self.tau = float(tau)
        self.clean_weight = float(clean_weight)
        self.uncertain_weight = float(uncertain_weight)
        self.cosine_offset = float(cosine_offset)
        self.eps = float(eps)
        self.exclude_self = exclude_self
        self.transform = transform
        self.ensemble = ensemble

    def forward(
        self,
        output: Union[Mapping[str, Any], Tensor],
        target: Tensor,
        texts: Sequence[str],
        beta: Any = None,
    ) -> Dict[str, Any]:
        r"""UAEO loss of a model output.

        Args:
            output: model output (see the module doc), or the protected
                reconstructions themselves (one per target image)
            target: the original images ``(B, 3, H, W)`` in ``[0, 1]``
            texts: one caption per image
            beta: per-sample paths when ``output["x_hat"]`` is one tensor
        """
        if texts is None or isinstance(texts, str) or len(texts) != target.size(0):
            got = (
                "none" if texts is None else 1 if isinstance(texts, str) else len(texts)
            )
            raise ValueError(
                f"Expected one caption per image ({target.size(0)}), got {got}"
            )
        if isinstance(output, Tensor):
            output = {"x_hat": output}
            beta = "protected"
        x_protected, x_original, index = decoded_paths(output, target, beta)[
            "protected"
        ]
        captions = [texts[i] for i in index.tolist()]
        results = [
            (weight, self._member_terms(member, x_protected, x_original, captions))
            for member, weight in vlp_members(self.vlp)
        ]
        out: Dict[str, Any] = {}
        for key in results[0][1]:
            if key == "split":
                continue
            if len(results) == 1:
                out[key] = results[0][1][key]
            elif key == "vlp_loss" and self.ensemble == "balanced":
                out[key] = balanced_sum(
                    [terms[key] for _, terms in results], [w for w, _ in results]
                )
            else:
                out[key] = sum(weight * terms[key] for weight, terms in results)
        out["split"] = [dict(terms["split"], index=index) for _, terms in results]
        return out

    def _member_terms(
        self,
        vlp: VLPAdapter,
        x_protected: Tensor,
        x_original: Tensor,
        captions: List[str],
    ) -> Dict[str, Any]:
        # Summing the (possibly empty) input keeps a zero loss attached to the graph.
        zero = x_protected.sum() * 0.0
        n = x_protected.size(0)
        if n == 0:
            empty = torch.zeros(0, dtype=torch.long, device=x_protected.device)
            return {
                "vlp_loss": zero,
                "clean_loss": zero,
                "uncertain_loss": zero,
                "i2t_loss": zero,
                "t2i_loss": zero,
                "clean_weight": zero.detach(),
                "uncertain_weight": zero.detach(),
                "num_clean": 0,
                "num_uncertain": 0,
                "protected_cosine": zero.detach(),
                "original_cosine": zero.detach(),
                "split": {
                    "clean": empty.bool(),
                    "image_labels": empty,
                    "text_labels": empty,
                    "alpha_i2t": zero.detach().new_zeros(0, 0),
                    "alpha_t2i": zero.detach().new_zeros(0, 0),
                    "normalized_evidence": zero.detach().new_zeros(0, 0),
                },
            }
        # Embeddings come back on the VLP's device; the loss lives with the images.
        device = x_protected.device
        with torch.no_grad():
            u = vlp.encode_image(x_original).to(device)
            v = vlp.encode_text(captions).to(device)
        split = evidential_split(
            u, v, self.logit_scale, self.tau, exclude_self=self.exclude_self
        )
        seen = x_protected if self.transform is None else self.transform(x_protected)
        p = vlp.encode_image(seen).to(device)
        clean = split["clean"]
        uncertain = ~clean
        cosine = (p * v).sum(dim=-1)
        has_clean = bool(clean.any())
        has_uncertain = bool(uncertain.any())

        clean_loss = (self.cosine_offset + cosine[clean]).mean() if has_clean else zero
        if has_uncertain:
            logits_i2t = self.logit_scale * p[uncertain] @ v.t()
            logits_t2i = self.logit_scale * v[uncertain] @ p.t()
            i2t_loss = F.cross_entropy(logits_i2t, split["image_labels"][uncertain])
            t2i_loss = F.cross_entropy(logits_t2i, split["text_labels"][uncertain])
        else:
            i2t_loss = t2i_loss = zero
        uncertain_loss = 0.5 * (i2t_loss + t2i_loss)

        if self.weighting == "fixed":
            w_clean = clean_loss.new_tensor(self.clean_weight)
            w_uncertain = clean_loss.new_tensor(self.uncertain_weight)
        else:
            w_clean, w_uncertain = adaptive_weights(
                [clean_loss, uncertain_loss], [has_clean, has_uncertain], self.eps
            )
        return {
            "vlp_loss": w_clean * clean_loss + w_uncertain * uncertain_loss,
            "clean_loss": clean_loss,
            "uncertain_loss": uncertain_loss,
            "i2t_loss": i2t_loss,
            "t2i_loss": t2i_loss,
            "clean_weight": w_clean.detach(),
            "uncertain_weight": w_uncertain.detach(),
            "num_clean": int(clean.sum()),
            "num_uncertain": int(uncertain.sum()),
            "protected_cosine": cosine.detach().mean(),
            "original_cosine": (u * v).sum(dim=-1).mean(),
            "split": {
                key: split[key]
                for key in (
                    "clean",
                    "image_labels",
                    "text_labels",
                    "alpha_i2t",
                    "alpha_t2i",
                    "normalized_evidence",
                )
            },
        }


register_criterion("psic-uaeo")(UAEOLoss)
