r"""``psic demo``: the whole idea, offline, on the CPU, in under a minute.

.. code-block:: none

    test scenes ──► demo PSIC codec ──► one bitstream each ─┬─► full decode ──────┐
    (generated)        compress once                         └─► protected decode ─┤
                                                                                    ▼
                               demo VLP (small CLIP): which caption matches each image?

The scenes come from the package's procedural caption benchmark
(:mod:`compressai_psic.datasets.scenes`), the codec and the VLP are the small
models shipped under ``zoo/`` (see their model cards). The demo prints rate, PSNR
and MS-SSIM of both paths, the VLP's Recall@1 on the original, full and protected
images, on the protected images after what a scraper would do to them (JPEG,
downscaling, blind grey-world colour normalisation, and colour maps an informed
attacker fits on 50 *other* scenes, those of the benchmark's validation split:
:mod:`compressai_psic.evaluation.attacks`), the attack success rate and how much of the
change protected − full is common to all images, and writes a side-by-side PNG
grid and a JSON report. The shipped VLPs the codec was not trained against
(``eval-rn``, ``eval-vit``, where the manifest has them) are asked too, or
others (``--eval-vlp``); every figure is reported per VLP, labelled with its
role.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..datasets import SceneCaptions
from ..evaluation import (
    DEFAULT_ATTACKS,
    build_attacks,
    codec_roundtrip,
    evaluate_shield,
)
from ..evaluation.latent_attacks import LatentInversionAttack
from ..evaluation.protection import protection_summary
from ..io.images import pil_to_tensor
from ..utils.results import write_json
from ..vlp import EVAL_VLPS, TRAIN_ENSEMBLE, load_demo_vlp, load_zoo_vlp
from ..zoo import load_named, manifest_entry
from .grid import draw_grid, top1_captions

__all__ = [
    "DEMO_MODEL_NAME",
    "FIT_IMAGES",
    "FIT_SPLIT",
    "GRID_FILE",
    "LATENT_STEPS",
    "REPORT_FILE",
    "demo_key",
    "run_demo",
    "shipped_eval_vlps",
    "shipped_train_vlps",
]

#: The files a run writes into its output folder.
GRID_FILE = "grid.png"
REPORT_FILE = "report.json"
#: Manifest name of the shipped demo codec.
DEMO_MODEL_NAME = "demo-psic"
#: Adam steps of the demo's latent inversion through the public model.
LATENT_STEPS = 50
#: Scenes the informed colour attacks are fitted on, and their split: the
#: benchmark's validation stream, disjoint from the test scenes evaluated.
FIT_IMAGES = 50
FIT_SPLIT = "val"


def demo_key(seed: int) -> Any:
    """The demo's publisher key: derived from the benchmark seed, so that a run
    can be repeated exactly. A publisher's own key comes from ``psic keygen``."""
    from ..models.keys import ShieldKey

    return ShieldKey.derived(f"psic-demo-publisher:{seed}")


def shipped_eval_vlps() -> List[str]:
    r"""Specs of the evaluation VLPs (:data:`~compressai_psic.vlp.EVAL_VLPS`)
    that the manifest has, in order."""
    return [spec for spec, (name, _) in EVAL_VLPS.items() if manifest_entry(name=name)]


def shipped_train_vlps() -> List[Any]:
    r"""The VLPs the shipped codec is trained against, one adapter per member of
    :data:`~compressai_psic.vlp.TRAIN_ENSEMBLE`; only the demo VLP when the
    manifest lacks one of the others."""
    if all(manifest_entry(name=name) for name in TRAIN_ENSEMBLE):
        return [load_zoo_vlp(name) for name in TRAIN_ENSEMBLE]
    return [load_demo_vlp()]


def run_demo(
    num_images: int = 100,
    seed: int = 0,
    output_dir: Optional[Path] = Path("psic-demo"),
    model: Optional[torch.nn.Module] = None,
    vlp: Any = None,
    grid_rows: int = 6,
    robustness: bool = True,
    progress: bool = True,
    eval_vlps: Optional[Sequence[Any]] = None,
    attacks: Optional[Sequence[str]] = None,
    fit_images: int = FIT_IMAGES,
    latent_steps: int = LATENT_STEPS,
    key: Any = None,
    model_name: Optional[str] = None,
) -> Dict[str, Any]:
    """Runs the demo and returns its report (also written to ``output_dir``).

    Args:
        num_images: test scenes (retrieval is ``num_images``-way)
        seed: the benchmark seed (the shipped models were evaluated on seed 0)
        output_dir: where ``report.json`` and ``grid.png`` go (``None``: nowhere)
        model: a shielded codec (default: the shipped ``demo-psic``)
        vlp: the VLP the codec was trained against, or a list of them (default:
            :func:`shipped_train_vlps`, the members of the training ensemble);
            the table's first block and the report's top-level ``recall`` /
            ``asr`` are the first one's
        grid_rows: scenes shown in the PNG grid
        robustness: also evaluate the protected images after the attacks
        progress: show progress bars
        eval_vlps: VLPs the codec was not trained against (adapters or
            :func:`~compressai_psic.vlp.build_vlp` specs), reported separately;
            default (``None``): the shipped evaluation VLPs
            (:data:`~compressai_psic.vlp.EVAL_VLPS`) that the manifest
            has, ``[]`` for none
        attacks: attack names (default
            :data:`~compressai_psic.evaluation.attacks.DEFAULT_ATTACKS`)
        fit_images: scenes of the validation split (same seed) that the
            informed attacks are fitted on; never test scenes
        latent_steps: Adam steps of the latent inversion through the public
            model (:mod:`~compressai_psic.evaluation.latent_attacks`: the public
            trigger, or for a keyed codec a key of the attacker's own); 0 skips it
        key: the publisher's key of a keyed codec (default: one derived from
            ``seed``, :func:`demo_key`)
        model_name: a named codec of the manifest instead of ``demo-psic``
    """
    start = time.perf_counter()
    name = model_name or DEMO_MODEL_NAME
    if model is None:
        model = load_named(name, progress=False)
    if key is None and getattr(model, "is_keyed", False):
        key = demo_key(seed)
    if vlp is None:
        vlp = shipped_train_vlps()
    entry = manifest_entry(name=name) or {}
    image_size = int(entry.get("image_size", 64))
    dataset = SceneCaptions(
        split="test",
        num_samples=num_images,
        seed=seed,
        image_size=image_size,
        distinct_captions=True,
    )
    if eval_vlps is None:
        eval_vlps = shipped_eval_vlps()
    attack_names = list(DEFAULT_ATTACKS if attacks is None else attacks)
    if not robustness:
        attack_names = []
    fit_dataset = None
    if any(a.needs_fit for a in build_attacks(attack_names).values()):
        if fit_images < 1:
            raise ValueError("Fitted attacks need fit_images >= 1")
        fit_dataset = SceneCaptions(
            split=FIT_SPLIT, num_samples=fit_images, seed=seed, image_size=image_size
        )
    attack_objects: Dict[str, Any] = dict(build_attacks(attack_names))
    if robustness and latent_steps > 0:
        mode = "own-key" if getattr(model, "is_keyed", False) else "public"
        latent = LatentInversionAttack(
            model, mode, steps=latent_steps, name=f"latent-{mode}"
        )
        attack_objects[latent.name] = latent
    with torch.inference_mode():
        report = evaluate_shield(
            model,
            dataset,
            train_vlps=vlp if isinstance(vlp, (list, tuple)) else [vlp],
            eval_vlps=list(eval_vlps),
            attacks=attack_objects,
            key=key,
            fit_dataset=fit_dataset,
            ks=(1, 5, 10),
            batch_size=25,
            progress=progress,
        )
    report["summary"] = protection_summary(report)
    if report["fit"] is not None:
        report["fit"]["dataset"] = f"scenes:{FIT_SPLIT}:seed{seed}:{fit_images}"
    report["model"] = name if entry else type(model).__name__
    report["keyed"] = key is not None
    report["seed"] = seed
    report["image_size"] = image_size

    rows = min(grid_rows, len(dataset))
    if output_dir is not None and rows > 0:
        originals = torch.cat(
            [pil_to_tensor(dataset.load_image(i)) for i in range(rows)]
        )
        with torch.inference_mode():
            decoded = codec_roundtrip(model, originals, key)
        images = {
            "original": originals,
            "full": decoded["full"],
            "protected": decoded["protected"],
        }
        captions = [
            c for i in range(len(dataset)) for c in dataset.image_captions_at(i)
        ]
        first = vlp[0] if isinstance(vlp, (list, tuple)) else vlp
        with torch.inference_mode():
            top1 = top1_captions(first, images, captions)
        truth = [dataset.image_captions_at(i)[0] for i in range(rows)]
        output_dir = Path(output_dir)
        report["grid"] = str(draw_grid(images, truth, top1, output_dir / GRID_FILE))
    report["seconds"] = round(time.perf_counter() - start, 2)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        report["report"] = str(output_dir / REPORT_FILE)
        # Strict JSON: a number that is not finite is written as null.
        write_json(output_dir / REPORT_FILE, report)
    return report
