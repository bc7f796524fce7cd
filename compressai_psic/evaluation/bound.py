r"""The per-image bound: what per-image optimisation reaches at a given PSNR.

A shielded codec (`"Privacy-Shielded Image Compression…"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025) is a *generator* of
perturbations: one network makes every protected decode. The yardstick of such
a generator is what an optimiser reaches when it may perturb every image on its
own, against the same surrogate VLPs, at the same PSNR, evaluated the same way.
:func:`per_image_bound` runs projected gradient descent (PGD) on the original
images, for L∞ and L2 budgets that span about 25–45 dB, and measures every
evaluation VLP on the results, as published and after each blind purification
of :mod:`~compressai_psic.evaluation.attacks`:

.. code-block:: none

    originals ──► PGD against the surrogate set (L∞ or L2, budget ε) ──► x + δ
                                                                          │
                 8-bit ──► attack (none, blur, median, JPEG, …) ──► every VLP
                                                                          │
                                               PSNR and Recall@1 per budget

The objective of each surrogate member is the negative cross-entropy of the
image's own caption among the batch's captions (logit scale 1/0.07): it pushes
the image away from its caption and towards the others, optionally plus
``1 + cos`` of a ResNet tower's mid-level features
(:func:`~compressai_psic.losses.feature_disruption`).
Each member's gradient is normalised per image before they are summed, so every
member falls instead of the easiest one. With ``input_diversity`` each step sees
the image randomly rescaled and padded (DI-FGSM), which helps transfer.

:func:`plot_bound` draws the curves of one report, one panel per evaluation
VLP, with the points of codecs on the same axes.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..vlp import VLPAdapter, VLPEnsemble, vlp_members
from .attacks import BLIND_ATTACKS, PURIFICATION_ATTACKS, build_attacks
from .codec import psnr_8bit
from .pixels import quantise_8bit
from .retrieval import (
    embed_images,
    embed_texts,
    recall_from_hits,
    retrieval_hits,
    similarity,
)

__all__ = [
    "BOUND_ATTACKS",
    "DEFAULT_BUDGETS",
    "NORMS",
    "budget_psnr",
    "per_image_bound",
    "pgd_perturb",
    "plot_bound",
]

#: Norms of the budgets.
NORMS = ("linf", "l2")
#: Default budgets in 8-bit levels: the L∞ bound, or the L2 bound as a
#: root-mean-square per value; both span about 25–45 dB of PSNR.
DEFAULT_BUDGETS: Dict[str, Sequence[float]] = {
    "linf": (1, 2, 4, 8, 16),
    "l2": (1.5, 3, 6, 10, 15),
}
#: Purifications the bound is measured after (all blind: no fit set needed).
BOUND_ATTACKS = tuple(a for a in BLIND_ATTACKS if a != "down2") + PURIFICATION_ATTACKS


def budget_psnr(norm: str, budget: float) -> float:
    """PSNR (dB) of a perturbation that uses all of an L2 budget (``budget`` as
    RMS in 8-bit levels), or the lower bound of an L∞ one."""
    if norm not in NORMS:
        raise ValueError(f'Invalid norm "{norm}": use one of {list(NORMS)}')
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    return 20 * math.log10(255.0 / budget)


def _diverse(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random rescaling to 85–100 % and zero padding back (DI-FGSM)."""
    height, width = x.shape[-2:]
    scale = 0.85 + 0.15 * float(torch.rand((), generator=generator))
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_h, new_w) == (height, width):
        return x
    small = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top = int(torch.randint(height - new_h + 1, (), generator=generator))
    left = int(torch.randint(width - new_w + 1, (), generator=generator))
    return F.pad(small, (left, width - new_w - left, top, height - new_h - top))


def _member_loss(
    member: VLPAdapter,
    images: Tensor,
    text: Tensor,
    reference: Optional[Tensor],
    feature_weight: float,
    feature_stage: str,
) -> Tensor:
    """Per-image objective of one surrogate (lower is better for the attacker)."""
    from ..losses.transfer import resnet_features

    logits = member.encode_image(images) @ text.t() / 0.07
    own = torch.arange(images.size(0), device=images.device)
    loss = -F.cross_entropy(logits, own, reduction="none")
    if reference is not None:
        features = resnet_features(member, images, feature_stage).flatten(1)
        loss = loss + feature_weight * (
            1 + F.cosine_similarity(features, reference, dim=1)
        )
    return loss


def pgd_perturb(
    images: Tensor,
    captions: Sequence[str],
    surrogate: Union[VLPAdapter, VLPEnsemble, Sequence[VLPAdapter]],
    norm: str,
    budget: float,
    steps: int = 20,
    input_diversity: bool = True,
    feature_weight: float = 0.0,
    feature_stage: str = "layer3",
    seed: int = 0,
    eot: Optional[Any] = None,
) -> Tensor:
    r"""Per-image PGD on ``images`` against ``surrogate``.

    Args:
        images: ``(B, 3, H, W)`` originals in ``[0, 1]``
        captions: one caption per image (the one to push away from)
        surrogate: the VLP(s) attacked
        norm: ``"linf"`` or ``"l2"``
        budget: in 8-bit levels: the L∞ bound, or the L2 bound as RMS per value
        steps: gradient steps (step size 2.5 · budget / steps)
        input_diversity: random rescale-and-pad before each step
        feature_weight: weight of ResNet feature disruption (ResNet members)
        feature_stage: the ResNet stage of that term
        seed: seed of the input diversity
        eot: a differentiable transform applied before the surrogates at every
            step (expectation over transformation, e.g. the codec's training
            scrapers, :func:`~compressai_psic.train.criterion.build_eot`), so the
            perturbation survives them

    Returns:
        the perturbed images in ``[0, 1]`` (not yet quantised)
    """
    from ..losses.transfer import has_resnet_tower, resnet_features

    if norm not in NORMS:
        raise ValueError(f'Invalid norm "{norm}": use one of {list(NORMS)}')
    if budget <= 0 or steps < 1:
        raise ValueError(f"Need budget > 0 and steps >= 1, got {budget}, {steps}")
    if len(captions) != images.size(0):
        raise ValueError(f"Need {images.size(0)} captions, got {len(captions)}")
    members = [m for m, _ in vlp_members(surrogate)]
    images = images.detach()
    epsilon = budget / 255.0
    if norm == "l2":
        epsilon = epsilon * math.sqrt(images[0].numel())
    alpha = 2.5 * epsilon / steps
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        texts = [m.encode_text(list(captions)).to(images.device) for m in members]
        references = [
            resnet_features(m, images, feature_stage).flatten(1)
            if feature_weight > 0 and has_resnet_tower(m)
            else None
            for m in members
        ]
    delta = torch.zeros_like(images)
    for _ in range(steps):
        delta.requires_grad_(True)
        adversarial = (images + delta).clamp(0, 1)
        seen = _diverse(adversarial, generator) if input_diversity else adversarial
        if eot is not None:
            seen = eot(seen, generator=generator)
        total = torch.zeros_like(images)
        for index, (member, text, reference) in enumerate(
            zip(members, texts, references)
        ):
            loss = _member_loss(
                member, seen, text, reference, feature_weight, feature_stage
            )
            # The members share the diversity transform's graph.
            (grad,) = torch.autograd.grad(
                loss.sum(), delta, retain_graph=index < len(members) - 1
            )
            norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
            total = total + grad / norms.view(-1, 1, 1, 1)
        delta = delta.detach()
        if norm == "linf":
            delta = (delta - alpha * total.sign()).clamp(-epsilon, epsilon)
        else:
            size = total.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta - alpha * total / size
            length = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta = delta * (epsilon / length.clamp_min(epsilon))
        delta = (images + delta).clamp(0, 1) - images
    return (images + delta).detach()


def _recalls(
    vlp: Any,
    variants: Mapping[str, Tensor],
    captions: List[str],
    image_to_captions: List[List[int]],
) -> Dict[str, Dict[str, float]]:
    """``{variant: {"i2t": R@1, "t2i": R@1}}`` of one VLP."""
    text = embed_texts(vlp, captions)
    out = {}
    for variant, images in variants.items():
        sim = similarity(embed_images(vlp, images), text)
        recall = recall_from_hits(retrieval_hits(sim, image_to_captions, (1,)))
        out[variant] = {d: recall[d]["R@1"] for d in ("i2t", "t2i")}
    return out


def per_image_bound(
    dataset: Any,
    surrogate: Union[VLPAdapter, VLPEnsemble, Sequence[VLPAdapter]],
    eval_vlps: Mapping[str, Any],
    budgets: Optional[Mapping[str, Sequence[float]]] = None,
    attacks: Sequence[str] = BOUND_ATTACKS,
    limit: Optional[int] = None,
    steps: int = 20,
    batch_size: int = 50,
    input_diversity: bool = True,
    feature_weight: float = 0.0,
    progress: bool = True,
    eot: Optional[Any] = None,
) -> Dict[str, Any]:
    r"""PGD at every budget on the originals of ``dataset``, measured by every
    VLP of ``eval_vlps`` as published and after every attack.

    Args:
        dataset: ``len``, ``load_image(i)`` and ``image_captions_at(i)`` (the
            first caption is the one PGD pushes away from)
        surrogate: the VLP(s) PGD attacks (a codec's training ensemble, to
            compare with that codec)
        eval_vlps: ``{name: VLP}`` that measure the result (include the
            surrogate members to see the white-box figure)
        budgets: ``{norm: [budget, …]}`` in 8-bit levels (default
            :data:`DEFAULT_BUDGETS`)
        attacks: purification attacks (names of
            :func:`~compressai_psic.evaluation.attacks.build_attack`, blind ones)
        limit: use only the first ``limit`` images
        steps: PGD steps per budget
        batch_size: images per PGD batch
        input_diversity: see :func:`pgd_perturb`
        feature_weight: see :func:`pgd_perturb`
        progress: show a progress bar
        eot: see :func:`pgd_perturb`

    Returns:
        JSON-serialisable dict: ``num_images``, ``surrogate`` (names),
        ``steps``, ``attacks``, ``original`` (``{vlp: {"i2t", "t2i"}}``), and
        ``points``: one per (norm, budget) with ``norm``, ``budget``, ``psnr``
        (mean dB of the 8-bit result), ``psnr_attacked`` (``{attack: dB}``)
        and ``recall`` (``{vlp: {variant: {"i2t", "t2i"}}}``, variants
        ``"perturbed"`` and ``"perturbed_<attack>"``), plus ``worst`` (per VLP
        and direction, the highest R@1 over the variants: what the best
        purification gives back)
    """
    from tqdm import tqdm

    from ..io.images import pil_to_tensor

    budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
    for norm in budgets:
        if norm not in NORMS:
            raise ValueError(f'Invalid norm "{norm}": use one of {list(NORMS)}')
    attack_objects = build_attacks(list(attacks))
    fitted = [name for name, a in attack_objects.items() if a.needs_fit]
    if fitted:
        raise ValueError(f"The bound runs blind attacks only; {fitted} need a fit")
    if not eval_vlps:
        raise ValueError("Give at least one evaluation VLP")
    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    if total < 1:
        raise ValueError("The dataset has no images")
    originals = torch.cat([pil_to_tensor(dataset.load_image(i)) for i in range(total)])
    captions: List[str] = []
    image_to_captions: List[List[int]] = []
    for i in range(total):
        own = list(dataset.image_captions_at(i))
        image_to_captions.append(list(range(len(captions), len(captions) + len(own))))
        captions.extend(own)
    first_captions = [dataset.image_captions_at(i)[0] for i in range(total)]

    report: Dict[str, Any] = {
        "num_images": total,
        "surrogate": [m.name for m, _ in vlp_members(surrogate)],
        "steps": steps,
        "input_diversity": input_diversity,
        "feature_weight": feature_weight,
        "eot": None
        if eot is None
        else list(getattr(eot, "names", [type(eot).__name__])),
        "attacks": list(attack_objects),
        "original": {
            name: _recalls(vlp, {"original": originals}, captions, image_to_captions)[
                "original"
            ]
            for name, vlp in eval_vlps.items()
        },
        "points": [],
    }
    jobs = [(norm, float(b)) for norm, values in budgets.items() for b in values]
    bar = tqdm(total=len(jobs) * total, desc="per-image bound", disable=not progress)
    for norm, budget in jobs:
        parts = []
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            parts.append(
                pgd_perturb(
                    originals[start:stop],
                    first_captions[start:stop],
                    surrogate,
                    norm,
                    budget,
                    steps=steps,
                    input_diversity=input_diversity,
                    feature_weight=feature_weight,
                    seed=start,
                    eot=eot,
                )
            )
            bar.update(stop - start)
        perturbed = quantise_8bit(torch.cat(parts))
        variants = {"perturbed": perturbed}
        with torch.no_grad():
            for name, attack in attack_objects.items():
                variants[f"perturbed_{name}"] = attack(perturbed)
        psnr_attacked = {
            name: _mean(psnr_8bit(variants[f"perturbed_{name}"], originals))
            for name in attack_objects
            if variants[f"perturbed_{name}"].shape == originals.shape
        }
        recall = {
            name: _recalls(vlp, variants, captions, image_to_captions)
            for name, vlp in eval_vlps.items()
        }
        worst = {
            name: {
                d: max(values[d] for values in by_variant.values())
                for d in ("i2t", "t2i")
            }
            for name, by_variant in recall.items()
        }
        report["points"].append(
            {
                "norm": norm,
                "budget": budget,
                "psnr": _mean(psnr_8bit(perturbed, originals)),
                "psnr_attacked": psnr_attacked,
                "recall": recall,
                "worst": worst,
            }
        )
    bar.close()
    return report


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else float("inf")


def plot_bound(
    report: Mapping[str, Any],
    path: str,
    codecs: Optional[Mapping[str, Mapping[str, Any]]] = None,
    direction: str = "i2t",
) -> str:
    r"""Draws PSNR against Recall@1 (``direction``), one panel per evaluation
    VLP: the bound as published (solid) and after its best purification
    (dashed) for each norm, the originals' R@1 (dotted line), and each codec's
    point ``{label: {"psnr": dB, "recall": {vlp: R@1}, "worst": {vlp: R@1}}}``
    (filled: as decoded; hollow: after its best purification).

    Needs matplotlib (the ``plot`` extra). Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["original"])
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False
    )
    colours = {"linf": "tab:blue", "l2": "tab:orange"}
    for index, name in enumerate(names):
        axis = axes[index // columns][index % columns]
        for norm in NORMS:
            points = sorted(
                (p for p in report["points"] if p["norm"] == norm),
                key=lambda p: p["psnr"],
            )
            if not points:
                continue
            psnr = [p["psnr"] for p in points]
            axis.plot(
                psnr,
                [p["recall"][name]["perturbed"][direction] for p in points],
                "o-",
                color=colours[norm],
                label=f"per-image {norm}",
            )
            axis.plot(
                psnr,
                [p["worst"][name][direction] for p in points],
                "o--",
                color=colours[norm],
                alpha=0.6,
                label=f"{norm}, best purification",
            )
        axis.axhline(
            report["original"][name][direction], color="grey", ls=":", label="original"
        )
        for label, codec in (codecs or {}).items():
            if name not in codec.get("recall", {}):
                continue
            axis.plot(codec["psnr"], codec["recall"][name], "k*", ms=11, label=label)
            if name in codec.get("worst", {}):
                axis.plot(
                    codec["psnr"], codec["worst"][name], "k*", ms=11, mfc="none",
                    label=f"{label}, best purification",
                )  # fmt: skip
        role = "surrogate" if name in report["surrogate"] else "never attacked"
        axis.set_title(f"{name} ({role})", fontsize=9)
        axis.set_xlabel("PSNR against the original (dB)")
        axis.set_ylabel(f"Recall@1 {direction}")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    for index in range(len(names), rows * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].legend(fontsize=6, loc="lower right")
    figure.suptitle(
        f"Per-image bound: PGD against {' + '.join(report['surrogate'])}, "
        f"{report['num_images']} images",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)
