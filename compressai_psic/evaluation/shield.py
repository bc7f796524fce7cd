r"""Privacy of a shielded codec against VLPs, as an attacker would measure it.

:func:`evaluate_shield` compresses every image of a caption dataset once,
decodes the full and the protected image, and asks every VLP, separately, to
retrieve captions from images and images from captions (Recall@K and the
attack success rate, :mod:`~compressai_psic.evaluation.retrieval`) on the
original, full and protected images and on the protected images after
**attacks**: what a scraper does to them (:mod:`~compressai_psic.evaluation.
attacks`: JPEG at quality 75 and 90, downscaling by ½, blind grey-world colour
normalisation, and colour maps an informed attacker fits on a separate set of
images it holds both ways). It also reports rate, PSNR, MS-SSIM and the
**image dependence** of the shield
(:class:`~compressai_psic.evaluation.image_dependence.DifferenceStats`).

The dataset is any object with ``len``, ``load_image(i)`` and
``image_captions_at(i)``, e.g. :class:`~compressai_psic.datasets.Flickr8kCaptions`
or :class:`~compressai_psic.datasets.SceneCaptions`. The VLPs are those the codec
was trained against and VLPs it was not, each reported separately with its role
(``"train"`` or ``"eval"``); :func:`evaluate_privacy` is the one-VLP form.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
from PIL import Image
from torch import Tensor

from ..vlp import VLPAdapter, VLPEnsemble, build_vlp, vlp_members
from .attacks import Attack, build_attacks, downscale, jpeg_reencode
from .codec import (
    codec_batches,
    finite_mean,
    ms_ssim_8bit,
    prepare_codec,
    psnr_8bit,
)
from .image_dependence import DifferenceStats
from .retrieval import (
    DEFAULT_KS,
    DIRECTIONS,
    Embeddings,
    attack_success_rate,
    chance_recall,
    embed_images,
    embed_texts,
    recall_from_hits,
    retrieval_hits,
    similarity,
)

__all__ = [
    "ROBUSTNESS_VARIANTS",
    "ROLES",
    "DatasetSlice",
    "evaluate_privacy",
    "evaluate_shield",
    "scraper_transforms",
]

#: Names of the variants :func:`scraper_transforms` produces, in order.
ROBUSTNESS_VARIANTS = ("jpeg75", "jpeg90", "down2")


def scraper_transforms() -> Dict[str, Callable[[Tensor], Tensor]]:
    r"""What a scraper's pipeline does to an image, by name.

    ``jpeg75`` and ``jpeg90`` re-encode as JPEG at those qualities; ``down2``
    halves both sides. Each maps ``(B, 3, H, W)`` in [0, 1] to images in [0, 1]
    (quantised to 8 bits, as any saved image is).
    """
    return {
        "jpeg75": lambda x: jpeg_reencode(x, 75),
        "jpeg90": lambda x: jpeg_reencode(x, 90),
        "down2": lambda x: downscale(x, 0.5),
    }


# -------------------------------------------------------------------- datasets


class DatasetSlice:
    r"""Images ``start .. stop − 1`` of a caption dataset, as a dataset.

    Takes an attacker's fit set from the same collection as the evaluation
    images without sharing any (e.g. the images after the evaluated ones).
    """

    def __init__(self, dataset: Any, start: int, stop: Optional[int] = None):
        stop = len(dataset) if stop is None else min(int(stop), len(dataset))
        if not 0 <= start <= stop:
            raise ValueError(f"Invalid slice {start}:{stop} of {len(dataset)} images")
        self.dataset, self.start, self.stop = dataset, int(start), stop

    def __len__(self) -> int:
        return self.stop - self.start

    def _index(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.start + i

    def load_image(self, i: int) -> Image.Image:
        return self.dataset.load_image(self._index(i))

    def image_captions_at(self, i: int) -> List[str]:
        return self.dataset.image_captions_at(self._index(i))


def _image_key(image: Tensor) -> str:
    data = image.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return hashlib.sha1(repr(data.shape).encode() + data.tobytes()).hexdigest()


# -------------------------------------------------------------------- pipeline

VLPLike = Union[str, VLPAdapter, VLPEnsemble]
ROLES = ("train", "eval")


def _vlp_entries(
    train_vlps: Union[None, VLPLike, Sequence[VLPLike]],
    eval_vlps: Union[None, VLPLike, Sequence[VLPLike]],
    device: Union[str, torch.device, None],
) -> List[Dict[str, Any]]:
    entries = []
    for role, vlps in zip(ROLES, (train_vlps, eval_vlps)):
        if vlps is None:
            continue
        if isinstance(vlps, (str, VLPAdapter, VLPEnsemble)):
            vlps = [vlps]
        for vlp in vlps:
            spec = vlp if isinstance(vlp, str) else None
            if spec is not None:
                vlp = build_vlp(spec, device=device or "cpu")
            entries.append(
                {
                    "role": role,
                    "name": getattr(vlp, "name", type(vlp).__name__),
                    "spec": spec,
                    "vlp": vlp,
                }
            )
    if not entries:
        raise ValueError("Give at least one training or evaluation VLP")
    return entries


def _fit_attacks(
    attacks: Mapping[str, Mapping[str, Attack]],
    model: nn.Module,
    fit_dataset: Any,
    total: int,
    image_size: Optional[int],
    batch_size: int,
    device: Union[str, torch.device],
    progress: bool,
    key: Any = None,
) -> set:
    """Fits every fitted attack of each source; returns the fit images' keys.
    ``key``: the attacker's own key(s) for a keyed model's protected decodes."""
    from tqdm import tqdm

    fitted = [
        (source, attack)
        for source, by_name in attacks.items()
        for attack in by_name.values()
        if attack.needs_fit
    ]
    for _, attack in fitted:
        attack.reset_fit()
    keys = set()
    bar = tqdm(total=total, desc="attack fit", unit="img", disable=not progress)
    for indices, originals, decoded, _ in codec_batches(
        model, fit_dataset, total, image_size, batch_size, device, key
    ):
        keys.update(_image_key(o) for o in originals)
        for source, attack in fitted:
            attack.partial_fit(decoded[source], originals)
        bar.update(len(indices))
    bar.close()
    for _, attack in fitted:
        attack.finish_fit()
    return keys


def _stack_parts(parts: List[Embeddings]) -> Embeddings:
    if isinstance(parts[0], Tensor):
        return torch.cat(parts)
    return [torch.cat([p[m] for p in parts]) for m in range(len(parts[0]))]


def _asr_tables(
    hits: Mapping[str, Any], variants: Sequence[str], relative: bool
) -> Dict[str, Any]:
    return {
        variant: {
            f"vs_{reference}": {
                direction: {
                    f"R@{k}": attack_success_rate(
                        hits[reference][direction][k],
                        hits[variant][direction][k],
                        relative=relative,
                    )
                    for k in hits[variant][direction]
                }
                for direction in DIRECTIONS
            }
            for reference in ("full", "original")
        }
        for variant in variants
    }


def evaluate_shield(
    model: nn.Module,
    dataset: Any,
    train_vlps: Union[None, VLPLike, Sequence[VLPLike]],
    eval_vlps: Union[None, VLPLike, Sequence[VLPLike]] = None,
    attacks: Union[None, Sequence[Union[str, Attack]], Mapping[str, Any]] = None,
    fit_dataset: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    image_size: Optional[int] = None,
    limit: Optional[int] = None,
    fit_limit: Optional[int] = None,
    batch_size: int = 8,
    attack_full: bool = False,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
    key: Any = None,
    fit_key: Any = None,
) -> Dict[str, Any]:
    r"""Retrieval privacy of a shielded codec as an attacker would measure it.

    Every image is compressed once and decoded to the full and the protected
    image. Each attack (:mod:`~compressai_psic.evaluation.attacks`) post-processes the
    protected decodes (and, with ``attack_full``, the full decodes, to tell what
    the attack alone costs); fitted attacks are first fitted on the decodes and
    originals of ``fit_dataset``, which must share no image with ``dataset``.
    Then every VLP, separately, retrieves captions from images and images from
    captions for every variant.

    Args:
        model: a shielded CompressAI model (``model.update(force=True)`` is run
            here)
        dataset: ``len(dataset)``, ``dataset.load_image(i)`` (a PIL image) and
            ``dataset.image_captions_at(i)`` (its captions)
        train_vlps: the VLP(s) the codec was trained against: adapters,
            ensembles (one similarity, the weighted mean over members) or spec
            strings for :func:`~compressai_psic.vlp.build_vlp`
        eval_vlps: VLPs the codec was *not* trained against, same forms
        attacks: names
            (:func:`~compressai_psic.evaluation.attacks.build_attack`),
            :class:`~compressai_psic.evaluation.attacks.Attack` objects or
            ``{name: callable}``; default
            :data:`~compressai_psic.evaluation.attacks.DEFAULT_ATTACKS`;
            ``[]`` for none
        fit_dataset: the attacker's fit set (needed by fitted attacks), same
            interface as ``dataset`` (captions unused)
        ks: Recall@K cut-offs
        image_size: resize every image (evaluated and fit) to this square size
            first; ``None`` keeps native sizes
        limit: evaluate only the first ``limit`` images
        fit_limit: fit on only the first ``fit_limit`` fit images
        batch_size: images per codec call when their sizes agree
        attack_full: also attack the full decodes (variants ``full_<attack>``)
        device: where the codec runs (default: where its parameters are); VLPs
            given as specs are built there
        progress: show tqdm bars
        key: the publisher's key, for a keyed model's protected decodes
        fit_key: the attacker's own key (or a function giving a fresh one per
            call) for the fit set's protected decodes of a keyed model

    Attacks whose ``on_full`` is False (the latent inversions, which fit
    through the model) are not applied to the full decodes.

    Returns:
        a JSON-serialisable dict with ``num_images``, ``num_captions``, ``ks``,
        ``image_size``, ``chance`` (Recall@K of a random ranking), ``bpp``,
        ``psnr`` (mean dB against the originals of ``full``, ``protected`` and
        every same-size attacked variant), ``ms_ssim`` (``full`` and
        ``protected``; ``ms_ssim_window`` says which Gaussian window, see
        :func:`ms_ssim_window`), ``image_dependence``
        (:class:`DifferenceStats` of protected − full), ``attacks`` (names),
        ``attack_params`` (fitted values), ``fit`` (fit set size, or ``None``),
        and ``vlps``: one entry per VLP, training VLPs first, each with its
        ``role`` (``"train"`` or ``"eval"``), ``name``, ``spec``, ``recall``
        (``{variant: {"i2t": {"R@1": ...}, "t2i": {...}}}``), ``asr`` and
        ``asr_relative`` (``{protected variant: {"vs_full" | "vs_original":
        {direction: {"R@k": share}}}}``, over all queries and over the
        reference's hits). For older readers the first entry's figures are
        repeated at the top level (``vlp``, ``vlp_role``, ``recall``, ``asr``,
        ``asr_relative``) and ``transforms`` repeats ``attacks``.
    """
    from tqdm import tqdm

    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    if total < 1:
        raise ValueError("The dataset has no images to evaluate")
    if device is None:
        device = next(model.parameters()).device
    entries = _vlp_entries(train_vlps, eval_vlps, device)
    sources = ("protected", "full") if attack_full else ("protected",)
    by_source = {source: build_attacks(attacks) for source in sources}
    if attack_full:  # separate instances: the full decodes get their own fit
        by_source["full"] = {n: copy.deepcopy(a) for n, a in by_source["full"].items()}
    names = list(by_source["protected"])
    needs_fit = [n for n, a in by_source["protected"].items() if a.needs_fit]
    model = prepare_codec(model, device)

    fit_info = None
    fit_keys: set = set()
    if needs_fit:
        if fit_dataset is None:
            raise ValueError(
                f"Attacks {needs_fit} are fitted on a separate set of images: "
                f"give fit_dataset (or leave them out)"
            )
        if fit_dataset is dataset:
            raise ValueError("fit_dataset must not be the evaluated dataset")
        fit_total = len(fit_dataset)
        if fit_limit is not None:
            fit_total = min(int(fit_limit), fit_total)
        if fit_total < 1:
            raise ValueError("The fit set has no images")
        fit_keys = _fit_attacks(
            by_source, model, fit_dataset, fit_total, image_size, batch_size,
            device, progress, fit_key,
        )  # fmt: skip
        fit_info = {"num_images": fit_total, "attacks": needs_fit}

    captions: List[str] = []
    image_to_captions: List[List[int]] = []
    embeddings: List[Dict[str, List[Embeddings]]] = [{} for _ in entries]
    bpp: List[float] = []
    psnr: Dict[str, List[float]] = {"full": [], "protected": []}
    ms_ssim: Dict[str, List[float]] = {"full": [], "protected": []}
    windows = set()
    dependence = DifferenceStats()

    bar = tqdm(total=total, desc="privacy eval", unit="img", disable=not progress)
    for indices, originals, decoded, rates in codec_batches(
        model, dataset, total, image_size, batch_size, device, key
    ):
        for i, original in zip(indices, originals):
            if fit_keys and _image_key(original) in fit_keys:
                raise ValueError(
                    f"Evaluated image {i} is also in the attacker's fit set; the "
                    "fit and evaluation sets must be disjoint"
                )
            own = list(dataset.image_captions_at(i))
            first = len(captions)
            image_to_captions.append(list(range(first, first + len(own))))
            captions.extend(own)
        bpp.extend(rates)
        dependence.update(decoded["protected"], decoded["full"])
        for source in ("full", "protected"):
            values, window = ms_ssim_8bit(decoded[source], originals)
            ms_ssim[source].extend(values)
            windows.add(window)
        variants: Dict[str, Tensor] = {"original": originals, **decoded}
        for source in sources:
            for name, attack in by_source[source].items():
                if source == "full" and not attack.on_full:
                    continue
                variants[f"{source}_{name}"] = attack(decoded[source])
        for variant, images in variants.items():
            if variant != "original" and images.shape == originals.shape:
                psnr.setdefault(variant, []).extend(psnr_8bit(images, originals))
            for store, entry in zip(embeddings, entries):
                store.setdefault(variant, []).append(
                    embed_images(entry["vlp"], images, max(batch_size, 32))
                )
        bar.update(len(indices))
    bar.close()

    protected_variants = ["protected"] + [f"protected_{n}" for n in names]
    vlp_reports = []
    for store, entry in zip(embeddings, entries):
        vlp = entry["vlp"]
        weights = [w for _, w in vlp_members(vlp)]
        text_emb = embed_texts(vlp, captions)
        hits = {
            variant: retrieval_hits(
                similarity(_stack_parts(parts), text_emb, weights),
                image_to_captions,
                ks,
            )
            for variant, parts in store.items()
        }
        vlp_reports.append(
            {
                "role": entry["role"],
                "name": entry["name"],
                "spec": entry["spec"],
                "recall": {v: recall_from_hits(h) for v, h in hits.items()},
                "asr": _asr_tables(hits, protected_variants, relative=False),
                "asr_relative": _asr_tables(hits, protected_variants, relative=True),
            }
        )

    # One window (the usual case), several (mixed sizes), or none (tiny images).
    window_list: Any = sorted(w for w in windows if w is not None) or None
    if window_list and len(window_list) == 1:
        window_list = window_list[0]
    primary = vlp_reports[0]
    return {
        "num_images": total,
        "num_captions": len(captions),
        "ks": [int(k) for k in ks],
        "image_size": image_size,
        "chance": chance_recall(image_to_captions, ks),
        "bpp": finite_mean(bpp),
        "psnr": {name: finite_mean(values) for name, values in psnr.items()},
        "ms_ssim": {name: finite_mean(values) for name, values in ms_ssim.items()},
        "ms_ssim_window": window_list,
        "image_dependence": dependence.result(),
        "attacks": names,
        "attack_sources": list(sources),
        "attack_params": {
            f"{source}_{name}": attack.describe()
            for source in sources
            for name, attack in by_source[source].items()
            if attack.needs_fit
        },
        "fit": fit_info,
        "vlps": vlp_reports,
        # The first VLP's figures, as evaluate_privacy reported them.
        "vlp": primary["name"],
        "vlp_role": primary["role"],
        "transforms": names,
        "recall": primary["recall"],
        "asr": primary["asr"],
        "asr_relative": primary["asr_relative"],
    }


def evaluate_privacy(
    model: nn.Module,
    dataset: Any,
    vlp: Union[VLPAdapter, VLPEnsemble],
    ks: Sequence[int] = DEFAULT_KS,
    image_size: Optional[int] = None,
    limit: Optional[int] = None,
    batch_size: int = 8,
    transforms: Optional[Mapping[str, Callable[[Tensor], Tensor]]] = None,
    robust_full: bool = True,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    r"""Retrieval privacy against one VLP (or ensemble), blind transforms only.

    :func:`evaluate_shield` with ``vlp`` as the one training VLP, the
    ``transforms`` (default :func:`scraper_transforms`) as attacks on the
    protected decodes and, with ``robust_full``, on the full decodes.
    """
    return evaluate_shield(
        model,
        dataset,
        train_vlps=[vlp],
        attacks=scraper_transforms() if transforms is None else dict(transforms),
        ks=ks,
        image_size=image_size,
        limit=limit,
        batch_size=batch_size,
        attack_full=robust_full,
        device=device,
        progress=progress,
    )
