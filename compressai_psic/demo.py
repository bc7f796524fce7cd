r"""``psic demo``: the whole idea, offline, on the CPU, in under a minute.

.. code-block:: none

    test scenes ──► demo PSIC codec ──► one bitstream each ─┬─► full decode ──────┐
    (generated)        compress once                         └─► protected decode ─┤
                                                                                    ▼
                               demo VLP (small CLIP): which caption matches each image?

The scenes come from the package's procedural caption benchmark
(:mod:`compressai_psic.scenes`), the codec and the VLP are the small models shipped
under ``zoo/`` (see their model cards). The demo prints rate, PSNR and MS-SSIM of
both paths, the VLP's Recall@1 on the original, full and protected images, on the
protected images after what a scraper would do to them (JPEG, downscaling, blind
grey-world colour normalisation, and colour maps an informed attacker fits on 50
*other* scenes, those of the benchmark's validation split:
:mod:`compressai_psic.attacks`), the attack success rate and how much of the
change protected − full is common to all images, and writes a side-by-side PNG
grid and a JSON report. The shipped VLPs the codec was not trained against
(``eval-rn``, ``eval-vit``, where the manifest has them) are asked too, or
others (``--eval-vlp``); every figure is reported per VLP, labelled with its
role.

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = [
    "DEMO_MODEL_NAME",
    "FIT_IMAGES",
    "FIT_SPLIT",
    "add_arguments",
    "draw_grid",
    "format_table",
    "run",
    "run_demo",
    "shipped_eval_vlps",
]

#: Manifest name of the shipped demo codec.
DEMO_MODEL_NAME = "demo-psic"
#: Scenes the informed colour attacks are fitted on, and their split: the
#: benchmark's validation stream, disjoint from the test scenes evaluated.
FIT_IMAGES = 50
FIT_SPLIT = "val"


def _top1_captions(
    vlp: Any, images: Dict[str, Tensor], captions: Sequence[str]
) -> Dict[str, List[str]]:
    from .retrieval import embed_images, embed_texts, similarity

    weights = None
    text = embed_texts(vlp, captions)
    out = {}
    for name, batch in images.items():
        sim = similarity(embed_images(vlp, batch), text, weights)
        out[name] = [captions[int(i)] for i in sim.argmax(dim=1)]
    return out


def draw_grid(
    images: Dict[str, Tensor],
    true_captions: Sequence[str],
    top1: Dict[str, List[str]],
    path: Path,
    cell: int = 160,
) -> Path:
    """Rows of ``original | full | protected``, each with the VLP's top-1 caption
    (green when it is the image's own caption, red otherwise)."""
    columns = list(images)
    rows = len(true_captions)
    text_height = 64
    font = ImageFont.load_default()
    grid = Image.new(
        "RGB", (cell * len(columns), rows * (cell + text_height) + 20), "white"
    )
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(columns):
        draw.text((c * cell + 4, 4), name, fill="black", font=font)
    for r in range(rows):
        top = 20 + r * (cell + text_height)
        for c, name in enumerate(columns):
            array = images[name][r].clamp(0, 1).mul(255).round().byte()
            tile = Image.fromarray(array.permute(1, 2, 0).numpy())
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (c * cell, top))
            guess = top1[name][r]
            colour = (0, 120, 0) if guess == true_captions[r] else (190, 0, 0)
            lines = textwrap.wrap(guess, width=cell // 6)[:5]
            draw.multiline_text(
                (c * cell + 3, top + cell + 2), "\n".join(lines), fill=colour, font=font
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _vlp_rows(entry: Dict[str, Any], attacks: Sequence[str]) -> List[str]:
    recall, asr = entry["recall"], entry["asr"]["protected"]
    title = f"Recall@1, {entry['name']} ({entry['role']})"
    lines = [f"  {title:34}{'image→text':>12}{'text→image':>12}"]
    variants = ["original", "full", "protected"]
    variants += [f"protected_{a}" for a in attacks if f"protected_{a}" in recall]
    for variant in variants:
        lines.append(
            f"  {variant:34}{recall[variant]['i2t']['R@1']:12.3f}"
            f"{recall[variant]['t2i']['R@1']:12.3f}"
        )
    for reference, label in (("full", "full decode"), ("original", "originals")):
        lines.append(
            f"  {'ASR@1 vs ' + label:34}{asr['vs_' + reference]['i2t']['R@1']:12.3f}"
            f"{asr['vs_' + reference]['t2i']['R@1']:12.3f}"
        )
    return lines


def format_table(report: Dict[str, Any]) -> str:
    """The demo's summary table, as printed: shared figures, then one block per
    VLP (training VLPs first), each labelled with its role."""
    chance = 1.0 / report["num_images"]
    ms_ssim = report.get("ms_ssim") or {}
    lines = [
        f"{report['num_images']} test scenes, one bitstream each; "
        f"chance Recall@1 = {chance:.3f}",
        f"  rate                    {_fmt(report['bpp'])} bpp (real bytes)",
        f"  PSNR full / protected   {_fmt(report['psnr']['full'], 2)} / "
        f"{_fmt(report['psnr']['protected'], 2)} dB",
    ]
    if ms_ssim:
        lines.append(
            f"  MS-SSIM full / protected {_fmt(ms_ssim.get('full'), 4)} / "
            f"{_fmt(ms_ssim.get('protected'), 4)} "
            f"(window {report.get('ms_ssim_window')})"
        )
    dependence = report.get("image_dependence")
    if dependence:
        offset = dependence.get("mean_offset_rgb") or []
        shift = "/".join(f"{v:+.3f}" for v in offset)
        lines.append(
            f"  protected − full: common to all images "
            f"{_fmt(dependence['common_share'])} of its energy, one global RGB "
            f"shift {_fmt(dependence['global_offset_share'])} ({shift})"
        )
    if report.get("fit"):
        lines.append(
            f"  informed attacks fitted on {report['fit']['num_images']} other "
            f"scenes ({report['fit'].get('dataset', 'a separate set')})"
        )
    entries = report.get("vlps") or [
        {
            "name": report.get("vlp", "vlp"),
            "role": report.get("vlp_role", "train"),
            "recall": report["recall"],
            "asr": report["asr"],
        }
    ]
    attacks = report.get("attacks") or report.get("transforms") or []
    for entry in entries:
        lines += [""] + _vlp_rows(entry, attacks)
    return "\n".join(lines)


def shipped_eval_vlps() -> List[str]:
    r"""Specs of the evaluation VLPs (:data:`~compressai_psic.demo_vlp.EVAL_VLPS`)
    that the manifest has, in order."""
    from .demo_vlp import EVAL_VLPS
    from .zoo import manifest_entry

    return [spec for spec, (name, _) in EVAL_VLPS.items() if manifest_entry(name=name)]


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
) -> Dict[str, Any]:
    """Runs the demo and returns its report (also written to ``output_dir``).

    Args:
        num_images: test scenes (retrieval is ``num_images``-way)
        seed: the benchmark seed (the shipped models were evaluated on seed 0)
        output_dir: where ``report.json`` and ``grid.png`` go (``None``: nowhere)
        model: a shielded codec (default: the shipped ``demo-psic``)
        vlp: the VLP the codec was trained against (default: the shipped
            ``demo-vlp``), or a list of them; the table's first block and the
            report's top-level ``recall`` / ``asr`` are the first one's
        grid_rows: scenes shown in the PNG grid
        robustness: also evaluate the protected images after the attacks
        progress: show progress bars
        eval_vlps: VLPs the codec was not trained against (adapters or
            :func:`~compressai_psic.vlp.build_vlp` specs), reported separately;
            default (``None``): the shipped evaluation VLPs
            (:data:`~compressai_psic.demo_vlp.EVAL_VLPS`) that the manifest
            has, ``[]`` for none
        attacks: attack names (default
            :data:`~compressai_psic.attacks.DEFAULT_ATTACKS`)
        fit_images: scenes of the validation split (same seed) that the
            informed attacks are fitted on; never test scenes
    """
    from .attacks import DEFAULT_ATTACKS, build_attacks
    from .datasets import SceneCaptions
    from .demo_vlp import load_demo_vlp
    from .retrieval import codec_roundtrip, evaluate_shield
    from .zoo import load_named, manifest_entry

    start = time.perf_counter()
    if model is None:
        model = load_named(DEMO_MODEL_NAME, progress=False)
    if vlp is None:
        vlp = load_demo_vlp()
    entry = manifest_entry(name=DEMO_MODEL_NAME) or {}
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
    with torch.inference_mode():
        report = evaluate_shield(
            model,
            dataset,
            train_vlps=vlp if isinstance(vlp, (list, tuple)) else [vlp],
            eval_vlps=list(eval_vlps),
            attacks=attack_names,
            fit_dataset=fit_dataset,
            ks=(1, 5, 10),
            batch_size=25,
            progress=progress,
        )
    if report["fit"] is not None:
        report["fit"]["dataset"] = f"scenes:{FIT_SPLIT}:seed{seed}:{fit_images}"
    report["model"] = DEMO_MODEL_NAME if entry else type(model).__name__
    report["seed"] = seed
    report["image_size"] = image_size

    rows = min(grid_rows, len(dataset))
    if output_dir is not None and rows > 0:
        from .image_io import pil_to_tensor

        originals = torch.cat(
            [pil_to_tensor(dataset.load_image(i)) for i in range(rows)]
        )
        with torch.inference_mode():
            decoded = codec_roundtrip(model, originals)
        images = {
            "original": originals,
            "full": decoded["full"],
            "protected": decoded["protected"],
        }
        captions = [
            c for i in range(len(dataset)) for c in dataset.image_captions_at(i)
        ]
        with torch.inference_mode():
            top1 = _top1_captions(vlp, images, captions)
        truth = [dataset.image_captions_at(i)[0] for i in range(rows)]
        output_dir = Path(output_dir)
        report["grid"] = str(draw_grid(images, truth, top1, output_dir / "grid.png"))
    report["seconds"] = round(time.perf_counter() - start, 2)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        report["report"] = str(output_dir / "report.json")
        with open(output_dir / "report.json", "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--num-images", type=int, default=100, help="test scenes (default 100)"
    )
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("psic-demo"),
        help="where grid.png and report.json go (default psic-demo/)",
    )
    parser.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip the attacks (JPEG, downscaling, colour correction)",
    )
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=None,
        metavar="NAME",
        help="attacks on the protected images (default: all of "
        "compressai_psic.attacks.DEFAULT_ATTACKS); e.g. jpeg75 greyworld "
        "affine_fit affine_fit+jpeg75",
    )
    parser.add_argument(
        "--fit-images",
        type=int,
        default=FIT_IMAGES,
        help="validation scenes the informed colour attacks are fitted on "
        "(default %(default)s)",
    )
    vlps = parser.add_mutually_exclusive_group()
    vlps.add_argument(
        "--eval-vlp",
        action="append",
        default=None,
        metavar="SPEC",
        help="a VLP the codec was not trained against (repeatable), reported "
        "separately; a spec of compressai_psic.vlp.build_vlp (default: the "
        "shipped evaluation VLPs, eval-rn and eval-vit, where present)",
    )
    vlps.add_argument(
        "--no-eval-vlps",
        action="store_true",
        help="only the VLP the codec was trained against",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .cli import CLIError

    if args.num_images < 2:
        raise CLIError("--num-images must be at least 2 (retrieval needs choices)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run_demo(
            num_images=args.num_images,
            seed=args.seed,
            output_dir=args.output_dir,
            robustness=not args.no_robustness,
            progress=not args.quiet,
            eval_vlps=[] if args.no_eval_vlps else args.eval_vlp,
            attacks=args.attacks,
            fit_images=args.fit_images,
        )
    except (RuntimeError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(format_table(report))
    print(
        f"\nwrote {report.get('grid')} and {report.get('report')} "
        f"in {report['seconds']:.1f} s"
    )
    return 0
