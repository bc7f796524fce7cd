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
                            │ worst adaptive: fitted maps, the inversion and, in a
                            │ pass of their own, the latent inversions through
                            │ the public model (each as a share of the original)

For a keyed model (:mod:`~compressai_psic.models.keyed`) the protected decodes
are made with the publisher's key; every pair the attacker fits on (colour maps,
filters, the learned inversion) is made with keys of its own, a fresh one per
codec call, and the latent inversions search the key noise or use an own key.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from .attacks import BLIND_ATTACKS, FITTED_ATTACKS, PURIFICATION_ATTACKS
from .inversion import recovered_share

__all__ = [
    "PROTECTION_ATTACKS",
    "attacker_keys",
    "evaluation_key",
    "evaluate_protection",
    "protection_summary",
]

#: The attacks of a protection report, besides the inversion.
PROTECTION_ATTACKS = BLIND_ATTACKS + PURIFICATION_ATTACKS + FITTED_ATTACKS

_DIRECTIONS = ("i2t", "t2i")


def attacker_keys(seed: int = 777) -> Callable[[], Any]:
    """A fresh key per call, reproducibly from ``seed``: the keys an attacker
    makes its own training pairs with (it never has the publisher's)."""
    from ..models.keys import ShieldKey

    count = [0]

    def next_key() -> ShieldKey:
        count[0] += 1
        return ShieldKey.derived(f"psic-attacker-key:{seed}:{count[0]}")

    return next_key


def evaluation_key(seed: int) -> Any:
    """The publisher's key of a reproducible evaluation (derived from the
    benchmark seed; the attackers never get it)."""
    from ..models.keys import ShieldKey

    return ShieldKey.derived(f"psic-evaluation-publisher:{seed}")


def _ratio(value: Optional[float], original: Optional[float]) -> Optional[float]:
    if value is None or not original:
        return None
    return value / original


def protection_summary(
    report: Mapping[str, Any],
    blind: Sequence[str] = BLIND_ATTACKS + PURIFICATION_ATTACKS,
    adaptive: Sequence[str] = FITTED_ATTACKS + ("inversion",),
) -> Dict[str, Any]:
    r"""What is left of the protection after each attack, from an
    :func:`~compressai_psic.evaluation.evaluate_shield` report.

    Returns:
        ``{"psnr": {attack: {"protected": dB, "full": dB}}, "vlps": [...]}``;
        each VLP entry has ``name``, ``role`` and per direction the R@1 of
        ``original``, ``full``, ``protected``, ``worst_blind`` (the highest R@1
        over the blind attacks) with ``worst_blind_attack``, ``inversion`` (when
        the report has it) and ``inversion_recovered`` (share of the recall
        the shield removed that the inversion gives back), ``worst_adaptive``
        (the highest R@1 over the fitted attacks and the inversion) with
        ``worst_adaptive_attack``, ``worst_latent`` / ``worst_latent_attack``
        (over the latent inversions of ``report["latent"]``, measured on its own
        images) and the ``*_ratio`` of each: R@1 over the original's R@1 on the
        same images
    """
    # Latent inversions run in the report itself (psic demo) count as adaptive.
    adaptive = list(adaptive) + [
        a for a in report.get("attacks", []) if a.startswith("latent-")
    ]
    latent = report.get("latent")
    latent_by_name = {v["name"]: v for v in latent["vlps"]} if latent else {}
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
            _worst(row, "worst_adaptive", r1, adaptive)
            row["protected_ratio"] = _ratio(row["protected"], row["original"])
            row["worst_blind_ratio"] = _ratio(row.get("worst_blind"), row["original"])
            row["worst_adaptive_ratio"] = _ratio(
                row.get("worst_adaptive"), row["original"]
            )
            own = latent_by_name.get(vlp["name"])
            if own is not None:
                lr1 = _recall_reader(own["recall"], direction)
                names = [a for a in latent["attacks"]]
                _worst(row, "worst_latent", lr1, names)
                row["latent_original"] = lr1("original")
                row["latent_protected"] = lr1("protected")
                row["worst_latent_ratio"] = _ratio(
                    row.get("worst_latent"), lr1("original")
                )
            out[direction] = row
        entries.append(out)
    return {"psnr": prices, "vlps": entries}


def _worst(row: Dict[str, Any], field: str, r1: Any, names: Sequence[str]) -> None:
    """``row[field]``: the highest R@1 over the attacks ``names`` present (and
    ``row[field + "_attack"]``, which)."""
    attacked = {n: r1(f"protected_{n}") for n in names}
    attacked = {n: v for n, v in attacked.items() if v is not None}
    if attacked:
        worst = max(attacked, key=lambda n: attacked[n])
        row[field] = attacked[worst]
        row[field + "_attack"] = worst


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
    key: Any = None,
    attacker_seed: int = 777,
    latent_steps: int = 0,
    latent_images: Optional[int] = None,
    latent_starts: int = 2,
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
        key: the publisher's key (a keyed model's protected decodes)
        attacker_seed: seed of the attacker's own keys and random starts
        latent_steps: Adam steps of the latent inversions
            (:func:`~compressai_psic.evaluation.latent_attacks.latent_attacks_for`);
            0 skips them
        latent_images: the first this many images get the latent inversions, in
            a pass of their own (``None``: all)
        latent_starts: restarts of the random-start searches

    Returns:
        the :func:`~compressai_psic.evaluation.evaluate_shield` report (blind
        attacks also applied to the full decodes) with ``"inversion"`` (the
        attacker's budget), ``"latent"`` (the latent inversions' own report, or
        ``None``) and ``"summary"`` (:func:`protection_summary`)
    """
    import torch

    from .attacks import build_attacks
    from .inversion import train_inversion
    from .latent_attacks import latent_attacks_for
    from .shield import evaluate_shield

    keyed = bool(getattr(model, "is_keyed", False))
    if keyed and key is None:
        raise ValueError("A keyed model is evaluated with the publisher's key: key=")
    own_keys = attacker_keys(attacker_seed) if keyed else None
    attack_objects = dict(build_attacks(list(attacks)))
    inversion = None
    if inversion_dataset is not None:
        if inversion_dataset is dataset:
            raise ValueError("The inversion must be trained on other images")
        inversion = train_inversion(
            model,
            inversion_dataset,
            progress=progress,
            key=own_keys,
            **dict(inversion_kwargs or {}),
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
            key=key,
            fit_key=own_keys,
        )
    report["inversion"] = None if inversion is None else inversion.info
    report["latent"] = None
    if latent_steps > 0:
        latent_attacks = latent_attacks_for(
            model, latent_steps, latent_starts, seed=attacker_seed
        )
        with torch.inference_mode():  # the attacks turn autograd on for their fits
            report["latent"] = evaluate_shield(
                model,
                dataset,
                train_vlps=list(train_vlps),
                eval_vlps=list(eval_vlps),
                attacks=latent_attacks,
                ks=(1, 5),
                limit=latent_images,
                batch_size=max(batch_size, 50),
                progress=progress,
                key=key,
            )
        report["latent"]["attack_params"] = {
            name: attack.describe() for name, attack in latent_attacks.items()
        }
    report["summary"] = protection_summary(report)
    return report
