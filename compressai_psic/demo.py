r"""``psic demo``: the whole idea, offline, on the CPU, in under a minute.

.. code-block:: none

    test scenes ──► demo PSIC codec ──► one bitstream each ─┬─► full decode ──────┐
    (generated)        compress once                         └─► protected decode ─┤
                                                                                    ▼
                               demo VLP (small CLIP): which caption matches each image?

The scenes come from the package's procedural caption benchmark
(:mod:`compressai_psic.scenes`), the codec and the VLP are the small models shipped
under ``zoo/`` (see their model cards). The demo prints rate, PSNR of both paths,
the VLP's Recall@1 on the original, full and protected images and the attack
success rate, and writes a side-by-side PNG grid and a JSON report.

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
    "add_arguments",
    "draw_grid",
    "format_table",
    "run",
    "run_demo",
]

#: Manifest name of the shipped demo codec.
DEMO_MODEL_NAME = "demo-psic"


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


def format_table(report: Dict[str, Any]) -> str:
    """The demo's summary table, as printed."""
    recall = report["recall"]
    asr = report["asr"]["protected"]
    chance = 1.0 / report["num_images"]
    lines = [
        f"{report['num_images']} test scenes, one bitstream each; "
        f"chance Recall@1 = {chance:.3f}",
        f"  rate                    {_fmt(report['bpp'])} bpp (real bytes)",
        f"  PSNR full / protected   {_fmt(report['psnr']['full'], 2)} / "
        f"{_fmt(report['psnr']['protected'], 2)} dB",
        "",
        f"  {'VLP Recall@1':24}{'image→text':>12}{'text→image':>12}",
    ]
    for variant in ("original", "full", "protected"):
        lines.append(
            f"  {variant:24}{recall[variant]['i2t']['R@1']:12.3f}"
            f"{recall[variant]['t2i']['R@1']:12.3f}"
        )
    for variant in sorted(v for v in recall if v.startswith("protected_")):
        lines.append(
            f"  {variant:24}{recall[variant]['i2t']['R@1']:12.3f}"
            f"{recall[variant]['t2i']['R@1']:12.3f}"
        )
    lines += [
        "",
        f"  ASR@1 vs full decode    {asr['vs_full']['i2t']['R@1']:12.3f}"
        f"{asr['vs_full']['t2i']['R@1']:12.3f}",
        f"  ASR@1 vs originals      {asr['vs_original']['i2t']['R@1']:12.3f}"
        f"{asr['vs_original']['t2i']['R@1']:12.3f}",
    ]
    return "\n".join(lines)


def run_demo(
    num_images: int = 100,
    seed: int = 0,
    output_dir: Optional[Path] = Path("psic-demo"),
    model: Optional[torch.nn.Module] = None,
    vlp: Any = None,
    grid_rows: int = 6,
    robustness: bool = True,
    progress: bool = True,
) -> Dict[str, Any]:
    """Runs the demo and returns its report (also written to ``output_dir``).

    Args:
        num_images: test scenes (retrieval is ``num_images``-way)
        seed: the benchmark seed (the shipped models were evaluated on seed 0)
        output_dir: where ``report.json`` and ``grid.png`` go (``None``: nowhere)
        model: a shielded codec (default: the shipped ``demo-psic``)
        vlp: the attacker's VLP (default: the shipped ``demo-vlp``)
        grid_rows: scenes shown in the PNG grid
        robustness: also evaluate the protected images after JPEG re-encoding
            and ½ downscaling
    """
    from .datasets import SceneCaptions
    from .demo_vlp import load_demo_vlp
    from .retrieval import codec_roundtrip, evaluate_privacy, scraper_transforms
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
    with torch.inference_mode():
        report = evaluate_privacy(
            model,
            dataset,
            vlp,
            ks=(1, 5, 10),
            transforms=scraper_transforms() if robustness else {},
            robust_full=False,
            batch_size=25,
            progress=progress,
        )
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
        help="skip the JPEG/downscale re-encoding of the protected images",
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
        )
    except (RuntimeError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(format_table(report))
    print(
        f"\nwrote {report.get('grid')} and {report.get('report')} "
        f"in {report['seconds']:.1f} s"
    )
    return 0
