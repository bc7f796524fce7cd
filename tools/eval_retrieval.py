r"""Privacy against VLPs: retrieval on original, full and protected images, as an
attacker would measure it.

Every image of a caption dataset is compressed once by a shielded model and
decoded to the full and the protected image. The protected decodes then go
through what a scraper may do to them (``--attacks``, see
:mod:`compressai_psic.evaluation.attacks`): JPEG re-encoding at quality 75 and
90, ½ downscaling, blind grey-world colour normalisation, and colour maps an
informed attacker fits on a *separate* set of images it holds both ways (a
per-channel statistics target, an RGB offset, a 3×3 + offset affine map; the fit
set is ``--fit-split``, or the images after ``--limit``, never an evaluated
image).
Every VLP (``--train-vlp``: the codec was trained against it; ``--eval-vlp``:
it was not) then retrieves captions from images (image→text) and images from
captions (text→image), each reported separately with its role:

- Recall@1/5/10 in both directions, per image variant;
- the attack success rate (ASR): the share of queries that the full decode (or
  the original image) hits at top-K and the protected variant misses, over all
  queries (``asr``) and over the reference's hits (``asr_relative``);
- shared by all VLPs: the mean bpp (real bytes of the entropy-coded strings),
  PSNR and MS-SSIM of both decodes (PSNR of every attacked variant too), and
  the image dependence of the protection: the share of the energy of
  protected − full that is common to all images.

Writes the results as JSON (``--output``, read by ``tools/plot_pareto.py``) and
a bar chart of the recalls (``--plot``), and prints a table.

Examples::

    # Flickr8k at 256×256 (as in the paper) against CLIP ViT-B/32, informed
    # attacks fitted on the validation split
    python tools/eval_retrieval.py --dataset flickr8k/ --split test \
        --fit-split val --image-size 256 --model bmshj2018-hyperprior \
        --quality 3 --train-vlp open_clip:ViT-B-32:/weights/ViT-B-32.pt \
        --output r.json --plot r.png
    # the demo model on 500 test scenes (seed 2025), against the demo VLP it
    # was trained against and two VLPs it was not; fit set: 200 val scenes
    python tools/eval_retrieval.py --scenes 500 --scene-seed 2025 \
        --named demo-psic --train-vlp demo --eval-vlp eval-rn \
        --eval-vlp eval-vit --fit-limit 200 --output demo.json
    # smoke test: random weights, tiny VLPs
    python tools/eval_retrieval.py --scenes 8 --model bmshj2018-factorized \
        --quality 1 --random-init --train-vlp tiny --eval-vlp tiny:1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from compressai_psic import load_checkpoint, zoo
from compressai_psic.evaluation import (
    DEFAULT_ATTACKS,
    DIRECTIONS,
    DatasetSlice,
    build_attacks,
    evaluate_shield,
)

__all__ = [
    "build_parser",
    "format_table",
    "load_datasets",
    "load_model",
    "main",
    "plot_recalls",
    "vlp_specs",
]

DEFAULT_SCENE_SIZE = 64
#: Caption dataset layouts of ``--dataset`` (the training tool's names).
DATASET_LAYOUTS = ("flickr8k", "list")
DEFAULT_FIT_LIMIT = 100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Retrieval privacy of a shielded codec against VLPs as an "
        "attacker measures it (Recall@K and attack success rate per VLP, after "
        "JPEG, downscaling and colour-correction attacks; image dependence).",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--dataset",
        type=Path,
        help="a caption dataset folder, laid out as --dataset-format says",
    )
    data.add_argument(
        "--scenes",
        type=int,
        metavar="N",
        help="the first N scenes of the generated test split (distinct captions)",
    )
    parser.add_argument(
        "--dataset-format",
        choices=DATASET_LAYOUTS,
        default="flickr8k",
        help="with --dataset: flickr8k (captions.txt of image,caption and Images/) "
        "or list (the training tool's layout: --split names a list of path stems, "
        "each with stem.jpg and stem.txt) (default: %(default)s)",
    )
    parser.add_argument(
        "--split",
        default=None,
        help="with --dataset: a split list (name of root/<split>.txt or a path); "
        "required with --dataset-format list",
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
        "--named",
        metavar="NAME",
        help="a shielded codec of the manifest (e.g. demo-psic)",
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
        "--train-vlp",
        "--vlp",
        dest="train_vlp",
        action="append",
        default=[],
        metavar="SPEC",
        help="a VLP the codec was trained against (repeatable; each reported "
        "separately, role 'train'): open_clip:<model>:<weights>, clip:<name>, "
        "demo[:<file>], tiny[:<seed>], ...",
    )
    parser.add_argument(
        "--demo-vlp",
        action="store_true",
        help="add the shipped demo VLP as a training VLP (same as --train-vlp demo)",
    )
    parser.add_argument(
        "--eval-vlp",
        action="append",
        default=[],
        metavar="SPEC",
        help="a VLP the codec was NOT trained against (repeatable; role 'eval')",
    )
    parser.add_argument(
        "--vlp-cache-dir", default=None, help="cache folder for open_clip weights"
    )
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=list(DEFAULT_ATTACKS),
        metavar="NAME",
        help="attacks on the protected decodes: jpeg<q>, down<k>, blur<sigma>, "
        "median<k>, downup<k>, noisyup, greyworld, greyworld_fit, offset_fit, "
        "pattern_fit, affine_fit, chains a+b (default: %(default)s)",
    )
    parser.add_argument(
        "--inversion-images",
        type=Path,
        default=None,
        help="the adaptive attacker's own images (a folder; none may be "
        "evaluated): a restoration network is trained on their (protected, "
        "full) decodes and applied to the published protected decodes (attack "
        "'inversion')",
    )
    parser.add_argument(
        "--inversion-scenes",
        type=int,
        default=0,
        help="with --scenes: train the inversion on this many train scenes of "
        "the attacker's own seed (--attacker-seed) instead",
    )
    parser.add_argument(
        "--attacker-seed", type=int, default=777, help="seed of the attacker's scenes"
    )
    parser.add_argument(
        "--inversion-seconds",
        type=float,
        default=600.0,
        help="wall-time budget of the inversion's training (default 600)",
    )
    parser.add_argument(
        "--attack-full",
        action="store_true",
        help="also attack the full decodes (what an attack alone costs)",
    )
    parser.add_argument(
        "--fit-split",
        default=None,
        help="the informed attacker's fit set: with --dataset a split list "
        "(default: the images after --limit); with --scenes a scene split "
        "(default val)",
    )
    parser.add_argument(
        "--fit-limit",
        type=int,
        default=DEFAULT_FIT_LIMIT,
        help="images of the fit set (default %(default)s)",
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
        help="no attacks (same as --attacks with no name)",
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
    if not args.train_vlp and not args.demo_vlp and not args.eval_vlp:
        parser.error("give at least one --train-vlp SPEC, --demo-vlp or --eval-vlp")
    if args.no_robustness:
        args.attacks = []
    try:
        fitted = [n for n, a in build_attacks(args.attacks).items() if a.needs_fit]
    except ValueError as err:
        parser.error(str(err))
    if args.fit_limit < 1:
        parser.error("--fit-limit must be positive")
    if args.scenes is not None and args.fit_split == "test":
        parser.error("--fit-split test would fit on the evaluated scenes")
    if fitted and args.dataset is not None and not args.fit_split and not args.limit:
        parser.error(
            f"attacks {fitted} are fitted on separate images: give --fit-split, "
            "or --limit (the fit set is then the images after the evaluated ones)"
        )
    if args.named and args.named not in zoo.codec_names():
        parser.error(
            f"--named {args.named}: not a shielded codec of the manifest; "
            f"choose from {zoo.codec_names()}"
        )
    if args.dataset is not None and not args.dataset.is_dir():
        parser.error(f"--dataset: not a folder: {args.dataset}")
    if args.dataset is not None and args.dataset_format == "list":
        if args.split is None:
            parser.error("--dataset-format list needs --split (its list file)")
        for option, split in (("--split", args.split), ("--fit-split", args.fit_split)):
            if split is not None and _list_file(args.dataset, split) is None:
                parser.error(
                    f"{option} {split}: no list file {args.dataset / (split + '.txt')}"
                )
    elif args.dataset is not None and not (args.dataset / "captions.txt").is_file():
        parser.error(f"no captions.txt in {args.dataset}")
    if args.scenes is not None and args.scenes < 1:
        parser.error("--scenes must be positive")
    if args.split and args.dataset is None:
        parser.error("--split applies to --dataset only")
    if min(args.ks) < 1:
        parser.error("--ks must be positive")
    if args.image_size is not None and args.image_size < 8:
        parser.error("--image-size must be at least 8")


def _list_file(root: Path, split: str) -> Optional[Path]:
    """The list file of a ``list``-layout split: ``root/<split>.txt`` or a path."""
    for candidate in (root / f"{split}.txt", Path(split)):
        if candidate.is_file():
            return candidate
    return None


def _folder_dataset(args: argparse.Namespace, split: Optional[str]) -> Any:
    from compressai_psic.datasets import CaptionListDataset, Flickr8kCaptions

    if args.dataset_format == "list":
        return CaptionListDataset(_list_file(args.dataset, split), args.dataset)
    return Flickr8kCaptions(args.dataset, split=split)


def warn_trivial_ks(ks: List[int], num_images: int) -> List[int]:
    """The ``ks`` at which Recall@K is 1 by construction (K ≥ the number of
    images), after a warning on stderr for each."""
    trivial = [k for k in ks if k >= num_images]
    for k in trivial:
        print(
            f"warning: R@{k} with {num_images} images is 1 by construction; "
            f"evaluate more than {k} images or pass smaller --ks",
            file=sys.stderr,
        )
    return trivial


def load_model(args: argparse.Namespace) -> nn.Module:
    """The shielded codec the arguments name."""
    if args.checkpoint:
        return load_checkpoint(args.checkpoint, architecture=args.architecture)
    if args.named:
        return zoo.load_named(args.named, progress=False)
    seed = args.seed if args.random_init else None
    return zoo.build_zoo_model(
        args.model, args.quality, args.metric, seed, progress=False
    )


def vlp_specs(args: argparse.Namespace) -> Dict[str, List[str]]:
    """``{"train": [...], "eval": [...]}``: the VLP specs the arguments name."""
    train = list(args.train_vlp)
    if args.demo_vlp and "demo" not in train:
        train.append("demo")
    return {"train": train, "eval": list(args.eval_vlp)}


def _build_vlps(specs: List[str], args: argparse.Namespace, device: str) -> List:
    from compressai_psic.vlp import build_vlp

    return [build_vlp(s, device=device, cache_dir=args.vlp_cache_dir) for s in specs]


def load_datasets(args: argparse.Namespace, fitted: bool) -> Tuple[Any, Any, str]:
    r"""The evaluated caption dataset, the attacker's fit set (``None`` when no
    attack is fitted) and a label of the fit set. Images are read lazily."""
    from compressai_psic.datasets import SceneCaptions

    if args.dataset is not None:
        dataset = _folder_dataset(args, args.split)
        if not fitted:
            return dataset, None, ""
        if args.fit_split:
            fit = _folder_dataset(args, args.fit_split)
            return fit_check(dataset, fit), fit, f"{args.dataset}:{args.fit_split}"
        stop = args.limit + args.fit_limit
        fit = DatasetSlice(dataset, args.limit, stop)
        if len(fit) == 0:
            raise ValueError(f"No images after the first {args.limit} to fit on")
        return dataset, fit, f"{args.dataset}:{args.split or 'all'}[{args.limit}:]"
    size = args.image_size or DEFAULT_SCENE_SIZE
    dataset = SceneCaptions(
        "test",
        num_samples=args.scenes,
        seed=args.scene_seed,
        image_size=size,
        captions_per_image=args.captions_per_image,
        distinct_captions=True,
    )
    if not fitted:
        return dataset, None, ""
    split = args.fit_split or "val"
    fit = SceneCaptions(
        split, num_samples=args.fit_limit, seed=args.scene_seed, image_size=size
    )
    return dataset, fit, f"scenes:{split}:seed{args.scene_seed}:{args.fit_limit}"


def fit_check(dataset: Any, fit: Any) -> Any:
    """Refuses a fit split that names any of the evaluated image files."""
    # Flickr8k names its image files; the list layout its path stems.
    names = getattr(dataset, "image_names", None) or getattr(dataset, "stems", None)
    fit_names = getattr(fit, "image_names", None) or getattr(fit, "stems", None)
    if names is not None and fit_names is not None:
        shared = sorted(set(names) & set(fit_names))
        if shared:
            raise ValueError(
                f"The fit split shares {len(shared)} images with the evaluated "
                f"split (e.g. {shared[0]})"
            )
    return dataset


def _variant_order(result: Mapping[str, Any], recall: Mapping[str, Any]) -> List[str]:
    preferred = ["original", "full", "protected"]
    for source in ("protected", "full"):
        preferred += [f"{source}_{t}" for t in result.get("attacks", [])]
    present = [v for v in preferred if v in recall]
    return present + sorted(v for v in recall if v not in present)


def _fmt(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(result: Mapping[str, Any]) -> str:
    """Shared figures, then per VLP (training VLPs first, each labelled with its
    role) the recalls per variant and the ASR of each protected variant
    (percent)."""
    ks = result["ks"]
    columns = [f"{d} R@{k}" for d in DIRECTIONS for k in ks]
    dependence = result.get("image_dependence") or {}
    ms_ssim = result.get("ms_ssim") or {}
    lines = [
        f"{result['num_images']} images, {result['num_captions']} captions, "
        f"bpp {_fmt(result['bpp'], '.4f')}",
        f"PSNR full {_fmt(result['psnr']['full'], '.2f')} dB, protected "
        f"{_fmt(result['psnr']['protected'], '.2f')} dB; MS-SSIM full "
        f"{_fmt(ms_ssim.get('full'), '.4f')}, protected "
        f"{_fmt(ms_ssim.get('protected'), '.4f')} (window "
        f"{result.get('ms_ssim_window')})",
        f"protected − full: common share {_fmt(dependence.get('common_share'), '.4f')}"
        f", global RGB offset share "
        f"{_fmt(dependence.get('global_offset_share'), '.4f')}",
    ]
    if result.get("fit"):
        lines.append(
            f"informed attacks fitted on {result['fit']['num_images']} images of "
            f"{result['fit'].get('dataset', 'a separate set')}"
        )
    chance = result.get("chance")
    entries = result.get("vlps") or [{"name": result["vlp"], "role": "train", **result}]
    for entry in entries:
        recall = entry["recall"]
        variants = _variant_order(result, recall)
        width = max([len(v) for v in variants] + [len("ASR vs original (%)")]) + 2
        lines += [
            "",
            f"== VLP {entry['name']} (role: {entry['role']})",
            "Recall (%)".ljust(width) + "".join(c.rjust(10) for c in columns),
        ]
        rows = [(v, recall[v]) for v in variants]
        if chance:
            rows.append(("chance", chance))
        for variant, values in rows:
            numbers = [values[d][f"R@{k}"] for d in DIRECTIONS for k in ks]
            lines.append(
                variant.ljust(width) + "".join(f"{100 * v:10.1f}" for v in numbers)
            )
        for reference in ("full", "original"):
            lines += ["", f"ASR vs {reference} (%)".ljust(width) + "".join(
                c.rjust(10) for c in columns
            )]  # fmt: skip
            for variant, by_reference in entry["asr"].items():
                asr = by_reference[f"vs_{reference}"]
                numbers = [asr[d][f"R@{k}"] for d in DIRECTIONS for k in ks]
                lines.append(
                    variant.ljust(width) + "".join(f"{100 * v:10.1f}" for v in numbers)
                )
    return "\n".join(lines)


def plot_recalls(result: Mapping[str, Any], output_file: Path) -> None:
    """Grouped bars of Recall@K per image variant: one row of panels per VLP
    (titled with its role), one column per direction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = result.get("vlps") or [
        {"name": result["vlp"], "role": "train", "recall": result["recall"]}
    ]
    ks = result["ks"]
    width = min(20.0, max(8.0, 0.9 * len(_variant_order(result, entries[0]["recall"]))))
    figure = Figure(figsize=(width, 4.8 * len(entries)))
    FigureCanvasAgg(figure)
    bar = 0.8 / len(ks)
    for row, entry in enumerate(entries):
        variants = _variant_order(result, entry["recall"])
        for index, direction in enumerate(DIRECTIONS):
            axes = figure.add_subplot(len(entries), 2, 2 * row + index + 1)
            for j, k in enumerate(ks):
                values = [
                    100 * entry["recall"][v][direction][f"R@{k}"] for v in variants
                ]
                positions = [
                    i + (j - (len(ks) - 1) / 2) * bar for i in range(len(variants))
                ]
                axes.bar(positions, values, width=bar, label=f"R@{k}")
            axes.set_xticks(range(len(variants)))
            axes.set_xticklabels(variants, rotation=40, ha="right", fontsize=8)
            axes.set_ylim(0, 115)  # room for the legend above the bars
            axes.set_yticks(range(0, 101, 20))
            axes.set_ylabel("Recall [%]")
            arrow = "image → text" if direction == "i2t" else "text → image"
            axes.set_title(f"{entry['name']} ({entry['role']}): {arrow}", fontsize=9)
            axes.grid(True, axis="y", alpha=0.4)
            axes.legend(loc="upper center", ncol=len(ks), fontsize=8)
    figure.suptitle(
        f"Retrieval privacy ({result['num_images']} images, "
        f"{_fmt(result['bpp'], '.3f')} bpp)"
    )
    figure.tight_layout()
    figure.savefig(output_file, dpi=120)


class _ImageFolder:
    """The images of a folder (sorted), for the attacker's inversion pairs."""

    def __init__(self, root: Path, image_size: Optional[int]):
        from compressai_psic.io.images import IMAGE_EXTENSIONS

        self.paths = sorted(
            p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not self.paths:
            raise ValueError(f"--inversion-images: no images in {root}")
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int):
        from compressai_psic.datasets.base import load_rgb_image

        image = load_rgb_image(self.paths[i])
        if self.image_size:
            image = image.resize((self.image_size, self.image_size))
        return image


def _attacker_images(args: argparse.Namespace) -> Any:
    """The adaptive attacker's own images, or ``None`` (no inversion)."""
    if args.inversion_images is not None:
        if not args.inversion_images.is_dir():
            raise ValueError(
                f"--inversion-images: not a folder: {args.inversion_images}"
            )
        return _ImageFolder(args.inversion_images, args.image_size)
    if args.inversion_scenes > 0:
        if args.dataset is not None:
            raise ValueError(
                "--inversion-scenes needs --scenes; use --inversion-images"
            )
        from compressai_psic.datasets import SceneCaptions

        return SceneCaptions(
            split="train",
            num_samples=args.inversion_scenes,
            seed=args.attacker_seed,
            image_size=args.image_size or DEFAULT_SCENE_SIZE,
        )
    return None


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.cuda else "cpu"
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda given but CUDA is not available")

    attacks = build_attacks(args.attacks)
    fitted = any(a.needs_fit for a in attacks.values())
    try:
        dataset, fit_dataset, fit_label = load_datasets(args, fitted)
        attacker_images = _attacker_images(args)
    except ValueError as err:
        parser.error(str(err))
    num_images = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    warn_trivial_ks(list(args.ks), num_images)
    model = load_model(args).to(device)
    inversion_info = None
    if attacker_images is not None:
        from compressai_psic.evaluation.inversion import train_inversion

        inversion = train_inversion(
            model,
            attacker_images,
            num_pairs=len(attacker_images),
            max_seconds=args.inversion_seconds,
            seed=args.attacker_seed,
            device=device,
            progress=not args.no_progress,
        )
        attacks = {**attacks, "inversion": inversion}
        inversion_info = inversion.info
    specs = vlp_specs(args)
    train_vlps = _build_vlps(specs["train"], args, device)
    eval_vlps = _build_vlps(specs["eval"], args, device)
    result = evaluate_shield(
        model,
        dataset,
        train_vlps=train_vlps,
        eval_vlps=eval_vlps,
        attacks=attacks,
        fit_dataset=fit_dataset,
        ks=args.ks,
        image_size=args.image_size if args.dataset is not None else None,
        limit=args.limit,
        fit_limit=args.fit_limit,
        batch_size=args.batch_size,
        attack_full=args.attack_full,
        device=device,
        progress=not args.no_progress,
    )
    for entry, spec in zip(result["vlps"], specs["train"] + specs["eval"]):
        entry["spec"] = spec
    result["inversion"] = inversion_info
    if result["fit"] is not None:
        result["fit"]["dataset"] = fit_label
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
        result["scene_seed"] = args.scene_seed
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
