r"""Privacy against VLPs: retrieval on original, full and protected images.

Every image of a caption dataset is compressed once by a shielded model and
decoded to the full and the protected image. A VLP (or an ensemble of VLPs,
whose similarities are averaged) then retrieves captions from images
(image→text) and images from captions (text→image). Reported, per image
variant (original, full, protected, and the protected and full images after a
scraper's JPEG re-encoding at quality 75 and 90 and ½ downscaling):

- Recall@1/5/10 in both directions;
- the attack success rate (ASR): the share of queries that the full decode (or
  the original image) hits at top-K and the protected variant misses, over all
  queries (``asr``) and over the reference's hits (``asr_relative``);
- the mean bpp (real bytes of the entropy-coded strings) and PSNR of both
  decodes.

Writes the results as JSON (``--output``) and a bar chart of the recalls
(``--plot``), and prints a table.

Examples::

    # Flickr8k at 256×256 (as in the paper) against CLIP ViT-B/32
    python tools/eval_retrieval.py --dataset flickr8k/ --split test \
        --image-size 256 --model bmshj2018-hyperprior --quality 3 \
        --vlp open_clip:ViT-B-32:/weights/ViT-B-32.pt --output r.json --plot r.png
    # the demo model against the demo VLP on 100 generated test scenes
    python tools/eval_retrieval.py --scenes 100 --named psic-demo --demo-vlp
    # smoke test: random weights, tiny VLP
    python tools/eval_retrieval.py --scenes 8 --model bmshj2018-factorized \
        --quality 1 --random-init --vlp tiny

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
import torch.nn as nn

from compressai_psic import load_checkpoint, zoo
from compressai_psic.retrieval import DIRECTIONS, evaluate_privacy, scraper_transforms

__all__ = ["build_parser", "format_table", "load_model", "main", "plot_recalls"]

DEFAULT_SCENE_SIZE = 64


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Retrieval privacy of a shielded codec against VLPs "
        "(Recall@K, attack success rate, robustness to JPEG and downscaling).",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--dataset",
        type=Path,
        help="Flickr8k-style folder: captions.txt (image,caption) and Images/",
    )
    data.add_argument(
        "--scenes",
        type=int,
        metavar="N",
        help="the first N scenes of the generated test split (distinct captions)",
    )
    parser.add_argument(
        "--split",
        default=None,
        help="with --dataset: a split list (name of root/<split>.txt or a path)",
    )
    parser.add_argument(
        "--captions-per-image",
        type=int,
        default=1,
        help="with --scenes: captions per scene (default: %(default)s)",
    )
    parser.add_argument(
        "--scene-seed", type=int, default=0, help="with --scenes: benchmark seed"
    )

    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model", choices=sorted(zoo.image_models), help="zoo architecture"
    )
    model.add_argument("--checkpoint", type=Path, help="a shielded checkpoint file")
    model.add_argument(
        "--named", metavar="NAME", help="a named model of the manifest (e.g. demo)"
    )
    parser.add_argument("--quality", type=int, help="with --model: zoo quality")
    parser.add_argument(
        "--metric", choices=zoo.METRICS, default="mse", help="with --model"
    )
    parser.add_argument(
        "--architecture",
        default=None,
        help="with --checkpoint: architecture (default: guessed from the weights)",
    )
    parser.add_argument(
        "--random-init",
        action="store_true",
        help="with --model: random weights (smoke tests; measures nothing real)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init")

    parser.add_argument(
        "--vlp",
        action="append",
        default=[],
        metavar="SPEC",
        help="attacker VLP, repeatable for an ensemble: open_clip:<model>:<weights>"
        ", clip:<name>, tiny[:<seed>]",
    )
    parser.add_argument(
        "--demo-vlp",
        action="store_true",
        help="the shipped demo VLP (for scene images); combines with --vlp",
    )
    parser.add_argument(
        "--vlp-cache-dir", default=None, help="cache folder for open_clip weights"
    )

    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize images to this square size (the paper: 256 for Flickr8k); "
        f"with --scenes the render size (default {DEFAULT_SCENE_SIZE})",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument(
        "--ks", type=int, nargs="+", default=[1, 5, 10], help="Recall@K cut-offs"
    )
    parser.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip the JPEG and downscaling variants",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images per codec call"
    )
    parser.add_argument("--output", type=Path, default=None, help="results JSON")
    parser.add_argument("--plot", type=Path, default=None, help="bar chart PNG")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--cuda", action="store_true", help="run on the GPU")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr"
    )
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.model:
        top = zoo.MAX_QUALITY[args.model]
        if args.quality is None or not 1 <= args.quality <= top:
            parser.error(f"--model {args.model} needs --quality in 1..{top}")
    elif args.quality is not None or args.random_init:
        parser.error("--quality and --random-init apply to --model only")
    if args.architecture and not args.checkpoint:
        parser.error("--architecture applies to --checkpoint only")
    if args.checkpoint and not args.checkpoint.is_file():
        parser.error(f"checkpoint not found: {args.checkpoint}")
    if not args.vlp and not args.demo_vlp:
        parser.error("give at least one --vlp SPEC or --demo-vlp")
    if args.dataset is not None and not (args.dataset / "captions.txt").is_file():
        parser.error(f"no captions.txt in {args.dataset}")
    if args.scenes is not None and args.scenes < 1:
        parser.error("--scenes must be positive")
    if args.split and args.dataset is None:
        parser.error("--split applies to --dataset only")
    if min(args.ks) < 1:
        parser.error("--ks must be positive")
    if args.image_size is not None and args.image_size < 8:
        parser.error("--image-size must be at least 8")


def load_model(args: argparse.Namespace) -> nn.Module:
    """The shielded codec the arguments name."""
    if args.checkpoint:
        return load_checkpoint(args.checkpoint, architecture=args.architecture)
    if args.named:
        return zoo.load_named(args.named, progress=False)
    entry = zoo.image_models[args.model]
    if args.random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            return entry(args.quality, metric=args.metric, pretrained=False)
    return entry(args.quality, metric=args.metric, pretrained=True, progress=False)


def load_vlp(args: argparse.Namespace, device: str):
    """The VLP, or an ensemble when several are named."""
    from compressai_psic.vlp import VLPEnsemble, build_vlp

    members = []
    if args.vlp:
        built = build_vlp(args.vlp, device=device, cache_dir=args.vlp_cache_dir)
        members.extend(built if isinstance(built, VLPEnsemble) else [built])
    if args.demo_vlp:
        from compressai_psic.demo_vlp import load_demo_vlp

        members.append(load_demo_vlp(device=device))
    return members[0] if len(members) == 1 else VLPEnsemble(members)


def load_dataset(args: argparse.Namespace):
    """The caption dataset the arguments name (images are read lazily)."""
    from compressai_psic.datasets import Flickr8kCaptions, SceneCaptions

    if args.dataset is not None:
        return Flickr8kCaptions(args.dataset, split=args.split)
    size = args.image_size or DEFAULT_SCENE_SIZE
    return SceneCaptions(
        "test",
        num_samples=args.scenes,
        seed=args.scene_seed,
        image_size=size,
        captions_per_image=args.captions_per_image,
        distinct_captions=True,
    )


def _variant_order(result: Mapping[str, Any]) -> List[str]:
    preferred = ["original", "full", "protected"]
    for source in ("protected", "full"):
        preferred += [f"{source}_{t}" for t in result.get("transforms", [])]
    present = [v for v in preferred if v in result["recall"]]
    return present + sorted(v for v in result["recall"] if v not in present)


def format_table(result: Mapping[str, Any]) -> str:
    """Recalls per variant, then the ASR of each protected variant (percent)."""
    ks = result["ks"]
    columns = [f"{d} R@{k}" for d in DIRECTIONS for k in ks]
    width = max([len(v) for v in result["recall"]] + [len("ASR vs original (%)")]) + 2
    lines = [
        f"{result['num_images']} images, {result['num_captions']} captions, "
        f"VLP {result['vlp']}, bpp {result['bpp']:.4f}, PSNR full "
        f"{result['psnr']['full']:.2f} dB, protected "
        f"{result['psnr']['protected']:.2f} dB",
        "",
        "Recall (%)".ljust(width) + "".join(c.rjust(10) for c in columns),
    ]
    for variant in _variant_order(result):
        recall = result["recall"][variant]
        values = [recall[d][f"R@{k}"] for d in DIRECTIONS for k in ks]
        lines.append(variant.ljust(width) + "".join(f"{100 * v:10.1f}" for v in values))
    for reference in ("full", "original"):
        lines += ["", f"ASR vs {reference} (%)".ljust(width) + "".join(
            c.rjust(10) for c in columns
        )]  # fmt: skip
        for variant, by_reference in result["asr"].items():
            asr = by_reference[f"vs_{reference}"]
            values = [asr[d][f"R@{k}"] for d in DIRECTIONS for k in ks]
            lines.append(
                variant.ljust(width) + "".join(f"{100 * v:10.1f}" for v in values)
            )
    return "\n".join(lines)


def plot_recalls(result: Mapping[str, Any], output_file: Path) -> None:
    """Grouped bars of Recall@K per image variant, one panel per direction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = _variant_order(result)
    ks = result["ks"]
    figure = Figure(figsize=(max(8.0, 0.9 * len(variants) * 2), 4.8))
    FigureCanvasAgg(figure)
    bar = 0.8 / len(ks)
    for index, direction in enumerate(DIRECTIONS):
        axes = figure.add_subplot(1, 2, index + 1)
        for j, k in enumerate(ks):
            values = [100 * result["recall"][v][direction][f"R@{k}"] for v in variants]
            positions = [
                i + (j - (len(ks) - 1) / 2) * bar for i in range(len(variants))
            ]
            axes.bar(positions, values, width=bar, label=f"R@{k}")
        axes.set_xticks(range(len(variants)))
        axes.set_xticklabels(variants, rotation=40, ha="right", fontsize=8)
        axes.set_ylim(0, 115)  # room for the legend above the bars
        axes.set_yticks(range(0, 101, 20))
        axes.set_ylabel("Recall [%]")
        axes.set_title("image → text" if direction == "i2t" else "text → image")
        axes.grid(True, axis="y", alpha=0.4)
        axes.legend(loc="upper center", ncol=len(ks), fontsize=8)
    figure.suptitle(
        f"Retrieval by {result['vlp']} ({result['num_images']} images, "
        f"{result['bpp']:.3f} bpp)"
    )
    figure.tight_layout()
    figure.savefig(output_file, dpi=150)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.cuda else "cpu"
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda given but CUDA is not available")

    model = load_model(args).to(device)
    vlp = load_vlp(args, device)
    dataset = load_dataset(args)
    result = evaluate_privacy(
        model,
        dataset,
        vlp,
        ks=args.ks,
        image_size=args.image_size if args.dataset is not None else None,
        limit=args.limit,
        batch_size=args.batch_size,
        transforms={} if args.no_robustness else scraper_transforms(),
        device=device,
        progress=not args.no_progress,
    )
    result["model"] = (
        str(args.checkpoint)
        if args.checkpoint
        else args.named
        or f"{args.model} q{args.quality} {args.metric}"
        + (" (random init)" if args.random_init else "")
    )
    result["dataset"] = (
        str(args.dataset) if args.dataset is not None else f"scenes:test:{args.scenes}"
    )
    if args.dataset is None:
        result["image_size"] = args.image_size or DEFAULT_SCENE_SIZE
    print(format_table(result))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_recalls(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
