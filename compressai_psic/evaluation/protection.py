r"""Everything a scraper would try, in one report: the protection that is left.

A protection figure of a shielded codec (`"Privacy-Shielded Image
Compression…" <https://arxiv.org/abs/2506.15201>`_, ICML 2025) counts only when
it holds against what an attacker does next. :func:`evaluate_protection` runs
:func:`~compressai_psic.evaluation.evaluate_shield` with every blind attack
(colour correction, JPEG, resizing, the purifications of
:mod:`~compressai_psic.transforms.purification`), the informed colour and
pattern fits, and a learned inversion
(:func:`~compressai_psic.evaluation.inversion.train_inversion`) trained on
scenes of the attacker's own; the same blind attacks are applied to the full
decodes too, so each attack's cost on a clean image is known.
:func:`protection_summary` reduces that report to what is left per VLP:

.. code-block:: none

    per VLP and direction:  original │ full │ protected │ worst blind attack
                            (which, its PSNR price, its cost on a full decode)
                            │ inversion (and the share of lost recall it gives back)
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from .attacks import BLIND_ATTACKS, FITTED_ATTACKS, PURIFICATION_ATTACKS
from .inversion import recovered_share

__all__ = ["PROTECTION_ATTACKS", "evaluate_protection", "protection_summary"]

#: The attacks of a protection report, besides the inversion.
PROTECTION_ATTACKS = BLIND_ATTACKS + PURIFICATION_ATTACKS + FITTED_ATTACKS

_DIRECTIONS = ("i2t", "t2i")


def protection_summary(
    report: Mapping[str, Any],
    blind: Sequence[str] = BLIND_ATTACKS + PURIFICATION_ATTACKS,
) -> Dict[str, Any]:
    r"""What is left of the protection after each attack, from an
    :func:`~compressai_psic.evaluation.evaluate_shield` report.

    Returns:
        ``{"psnr": {attack: {"protected": dB, "full": dB}}, "vlps": [...]}``;
        each VLP entry has ``name``, ``role`` and per direction the R@1 of
        ``original``, ``full``, ``protected``, ``worst_blind`` (the highest R@1
        over the blind attacks) with ``worst_blind_attack``, ``inversion`` (when
        the report has it) and ``inversion_recovered`` (share of the recall
        the shield removed that the inversion gives back)
    """
    psnr = report.get("psnr", {})
    prices = {
        name: {
            "protected": psnr.get(f"protected_{name}"),
            "full": psnr.get(f"full_{name}"),
        }
        for name in report.get("attacks", [])
    }
    entries = []
    for vlp in report["vlps"]:
        recall = vlp["recall"]
        out: Dict[str, Any] = {"name": vlp["name"], "role": vlp["role"]}
        for direction in _DIRECTIONS:
            r1 = _recall_reader(recall, direction)
            row: Dict[str, Any] = {
                "original": r1("original"),
                "full": r1("full"),
                "protected": r1("protected"),
            }
            attacked = {
                name: r1(f"protected_{name}")
                for name in blind
                if r1(f"protected_{name}") is not None
            }
            if attacked:
                worst = max(attacked, key=lambda name: attacked[name])
                row["worst_blind"] = max(row["protected"], attacked[worst])
                row["worst_blind_attack"] = (
                    worst if attacked[worst] >= row["protected"] else "none"
                )
            inversion = r1("protected_inversion")
            if inversion is not None:
                row["inversion"] = inversion
                row["inversion_recovered"] = recovered_share(
                    row["original"], row["protected"], inversion
                )
            out[direction] = row
        entries.append(out)
    return {"psnr": prices, "vlps": entries}


def _recall_reader(recall: Mapping[str, Any], direction: str):
    """``variant → R@1`` in ``direction`` (``None`` for a missing variant)."""

    def read(variant: str) -> Optional[float]:
        values = recall.get(variant)
        return None if values is None else values[direction]["R@1"]

    return read


def evaluate_protection(
    model: Any,
    dataset: Any,
    train_vlps: Sequence[Any],
    eval_vlps: Sequence[Any],
    fit_dataset: Any,
    inversion_dataset: Any = None,
    inversion_kwargs: Optional[Mapping[str, Any]] = None,
    attacks: Sequence[str] = PROTECTION_ATTACKS,
    batch_size: int = 25,
    progress: bool = True,
) -> Dict[str, Any]:
    r"""The full protection report of a shielded codec.

    Args:
        model: the shielded codec
        dataset: evaluated images with captions (e.g. test scenes)
        train_vlps: the VLPs the codec was trained against, one entry each
            (ensemble members separately)
        eval_vlps: VLPs it never saw
        fit_dataset: the informed attacks' fit set (disjoint from ``dataset``)
        inversion_dataset: the attacker's own images for the learned
            inversion (disjoint from ``dataset``); ``None`` skips it
        inversion_kwargs: arguments of
            :func:`~compressai_psic.evaluation.inversion.train_inversion`
            (its budget)
        attacks: attack names besides the inversion
        batch_size: images per codec call
        progress: show progress bars

    Returns:
        the :func:`~compressai_psic.evaluation.evaluate_shield` report (blind
        attacks also applied to the full decodes) with ``"inversion"`` (the
        attacker's budget) and ``"summary"`` (:func:`protection_summary`)
    """
    import torch

    from .attacks import build_attacks
    from .inversion import train_inversion
    from .shield import evaluate_shield

    attack_objects = dict(build_attacks(list(attacks)))
    inversion = None
    if inversion_dataset is not None:
        if inversion_dataset is dataset:
            raise ValueError("The inversion must be trained on other images")
        inversion = train_inversion(
            model, inversion_dataset, progress=progress, **dict(inversion_kwargs or {})
        )
        attack_objects["inversion"] = inversion
    with torch.inference_mode():
        report = evaluate_shield(
            model,
            dataset,
            train_vlps=list(train_vlps),
            eval_vlps=list(eval_vlps),
            attacks=attack_objects,
            fit_dataset=fit_dataset,
            ks=(1, 5),
            batch_size=batch_size,
            attack_full=True,
            progress=progress,
        )
    report["inversion"] = None if inversion is None else inversion.info
    report["summary"] = protection_summary(report)
    return report
