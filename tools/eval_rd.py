r"""Rate–distortion curves of both decode paths of shielded models on a dataset.

For every rate point (zoo qualities or checkpoint files) each image is encoded
once and decoded to the full and to the protected image. The rate comes from the
real bytes of the ``.psic`` file; PSNR and MS-SSIM are measured on 8-bit RGB;
encode time, the decode time of each path and the time of the joint decode
(one entropy decode for both paths) are recorded.

Writes one JSON per path in the format of ``python -m compressai.utils.eval_model``
(``<name>-full.json``, ``<name>-protected.json``) and ``rd.png`` with both curves,
and prints the JSONs (one object keyed by path). The JSON files can be drawn next
to CompressAI's own results::

    python -m compressai.utils.plot -f out/psic-bmshj2018-hyperprior-mse-full.json \
        out/psic-bmshj2018-hyperprior-mse-protected.json bmshj2018-hyperprior.json

Examples::

    # pretrained zoo models (PSIC weights from the manifest)
    python tools/eval_rd.py kodak/ -a bmshj2018-hyperprior -q 1 2 3 4 -o results/
    # trained checkpoints, architecture guessed from the weights
    python tools/eval_rd.py kodak/ -p runs/q1/best.pth.tar runs/q2/best.pth.tar -o out/
    # smoke test without any weights: tiny randomly initialised models
    python tools/eval_rd.py images/ -a bmshj2018-hyperprior -q 1 2 --random-init \
        --N 16 --M 24 -o out/

Images whose shorter side is under 161 pixels get no MS-SSIM (``NaN``); see
:mod:`compressai_psic.evaluation.rd`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import compressai
import torch
import torch.nn as nn

from compressai_psic import load_checkpoint, zoo
from compressai_psic.evaluation import (
    DEFAULT_CONDITIONS,
    collect_images,
    condition_label,
    evaluate_dataset,
    parse_condition,
    rd_json,
)
from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.models.registry import ARCHITECTURES

__all__ = ["build_parser", "main", "plot_rd", "prepare_model"]


def prepare_model(model: nn.Module, device: str, update: bool = True) -> nn.Module:
    """Eval mode, one forward pass, fresh CDF tables, on ``device``, warmed up.

    The forward pass matters for mbt2018 and cheng2020: their masked context
    convolution masks its weight in place during the first forward. One
    untimed encode/decode on ``device`` keeps one-off costs (kernel selection,
    allocator growth, lazy initialisation) out of the first image's times.
    """
    model = model.eval()
    factor = int(getattr(model, "downsampling_factor", 64))
    with torch.no_grad():
        model(torch.zeros(1, 3, factor, factor))
        if update:
            model.update(force=True)
        model = model.to(device)
        warm_up = torch.full((1, 3, factor, factor), 0.5, device=device)
        encoded = model.compress(warm_up)
        model.decompress_multi(encoded["strings"], encoded["shape"])
    return model


def _zoo_model(args: argparse.Namespace, quality: int) -> nn.Module:
    kwargs = {k: v for k, v in (("N", args.N), ("M", args.M)) if v is not None}
    # The same seed gives the same weights as `psic compress --random-init --seed`.
    seed = args.seed if args.random_init else None
    return zoo.build_zoo_model(
        args.architecture, quality, args.metric, seed, progress=False, **kwargs
    )


def _runs(
    args: argparse.Namespace,
) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """(run name, how to build the model, header identity) per rate point."""
    if args.paths:
        return [
            (
                Path(path).name,
                path,
                {"checkpoint_sha256": sha256_file(path)},
            )
            for path in args.paths
        ]
    return [
        (
            f"q{quality}",
            quality,
            {
                "quality": quality,
                "metric": args.metric,
                "seed": args.seed if args.random_init else None,
            },
        )
        for quality in sorted(set(args.qualities))
    ]


_AXIS_LABELS = {"psnr-rgb": "PSNR (RGB) [dB]", "ms-ssim-rgb": "MS-SSIM (RGB) [dB]"}


def plot_rd(curves: Sequence[Mapping[str, Any]], output_file: Path) -> None:
    """Draws PSNR (and MS-SSIM in dB, when any image has it) against bpp.

    MS-SSIM is shown as ``-10 log10(1 - MS-SSIM)``, as CompressAI's plot tool does.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = ["psnr-rgb"]
    if any(not math.isnan(v) for c in curves for v in c["results"]["ms-ssim-rgb"]):
        panels.append("ms-ssim-rgb")
    figure = Figure(figsize=(6.5 * len(panels), 5))
    FigureCanvasAgg(figure)
    for index, metric_name in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for curve in curves:
            xs = curve["results"]["bpp"]
            ys = list(curve["results"][metric_name])
            if metric_name == "ms-ssim-rgb":
                ys = [-10 * math.log10(1 - v) if v < 1 else math.inf for v in ys]
            order = sorted(range(len(xs)), key=xs.__getitem__)
            axes.plot(
                [xs[i] for i in order],
                [ys[i] for i in order],
                marker="o",
                linewidth=1.2,
                linestyle="--" if curve.get("condition") == "protected" else "-",
                label=curve["name"],
            )
        axes.set_xlabel("Bit-rate [bpp]")
        axes.set_ylabel(_AXIS_LABELS[metric_name])
        axes.grid(True, alpha=0.4)
        axes.legend(loc="lower right")
    figure.suptitle("PSIC rate–distortion: full and protected decodes")
    figure.tight_layout()
    figure.savefig(output_file, dpi=150)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Rate–distortion of the full and protected decodes of shielded "
        "models (CompressAI eval_model JSON, one file per path).",
    )
    parser.add_argument("dataset", type=Path, help="folder of images (recursive)")
    parser.add_argument(
        "-a",
        "--architecture",
        choices=sorted(ARCHITECTURES),
        help="model architecture (required with -q; guessed from checkpoints)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-q",
        "--quality",
        dest="qualities",
        type=int,
        nargs="+",
        help="zoo qualities, one rate point each (e.g. -q 1 2 3)",
    )
    source.add_argument(
        "-p",
        "--path",
        dest="paths",
        nargs="+",
        help="checkpoint files, one rate point each",
    )
    parser.add_argument(
        "-m",
        "--metric",
        choices=zoo.METRICS,
        default="mse",
        help="metric the zoo models were trained for (default: %(default)s)",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--pretrained",
        action="store_true",
        help="zoo models with published weights (the default with -q)",
    )
    weights.add_argument(
        "--random-init",
        action="store_true",
        help="zoo models with random weights (smoke tests; measures nothing real)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of --random-init weights"
    )
    parser.add_argument(
        "--N", type=int, default=None, help="channel override for --random-init"
    )
    parser.add_argument(
        "--M", type=int, default=None, help="channel override for --random-init"
    )
    parser.add_argument(
        "--no-update",
        action="store_true",
        help="keep the CDF tables stored in the checkpoints",
    )
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=list(DEFAULT_CONDITIONS),
        help="paths to decode: full, protected or a beta in [0, 1] "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "-c",
        "--entropy-coder",
        choices=compressai.available_entropy_coders(),
        default=compressai.available_entropy_coders()[0],
        help="entropy coder (default: %(default)s)",
    )
    parser.add_argument(
        "--entropy-estimation",
        action="store_true",
        help="rate from the likelihoods of a forward pass (no entropy coding)",
    )
    parser.add_argument(
        "--per-image",
        action="store_true",
        help="add the results of every image (key per_image)",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=None,
        help="write <name>-<path>.json per path and rd.png here",
    )
    parser.add_argument(
        "-n",
        "--name",
        default=None,
        help="curve name prefix (default: psic-<architecture>[-<metric>])",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of torch; 1 (the default) matches CompressAI's eval_model "
        "and its published CPU times",
    )
    parser.add_argument("--cuda", action="store_true", help="run on the GPU")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars on stderr"
    )
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.qualities:
        if args.architecture not in zoo.image_models:
            parser.error(
                "-q needs -a/--architecture, one of " + ", ".join(zoo.image_models)
            )
        top = zoo.MAX_QUALITY[args.architecture]
        bad = [q for q in args.qualities if not 1 <= q <= top]
        if bad:
            parser.error(
                f"qualities {bad} out of range 1..{top} for {args.architecture}"
            )
    else:
        if args.random_init or args.pretrained:
            parser.error("--pretrained/--random-init apply to zoo models (-q) only")
        for path in args.paths:
            if not Path(path).is_file():
                parser.error(f"checkpoint not found: {path}")
    if (args.N is not None or args.M is not None) and not args.random_init:
        parser.error("--N/--M apply to --random-init models only")
    if args.no_update and not args.paths:
        parser.error("--no-update applies to checkpoints (-p) only")
    try:
        args.conditions = [parse_condition(c) for c in args.conditions]
    except ValueError as err:
        parser.error(str(err))
    labels = [condition_label(c) for c in args.conditions]
    if len(set(labels)) != len(labels):
        parser.error(f"--conditions must be distinct, got {labels}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if not args.dataset.is_dir():
        parser.error(f"dataset folder not found: {args.dataset}")


def _evaluate_runs(
    args: argparse.Namespace, filepaths: Sequence[Path], device: str
) -> Tuple[List[Dict[str, Any]], List[str], str]:
    """Evaluates every rate point; returns results, run names, architecture."""
    results = []
    run_names = []
    architecture = args.architecture
    for run_name, source, identity in _runs(args):
        if args.paths:
            model = load_checkpoint(source, architecture=args.architecture)
            update = not args.no_update
        else:
            model = _zoo_model(args, source)
            update = True
        model = prepare_model(model, device, update=update)
        architecture = architecture or model.architecture
        identity["architecture"] = model.architecture
        results.append(
            evaluate_dataset(
                model,
                filepaths,
                args.conditions,
                entropy_estimation=args.entropy_estimation,
                identity=identity,
                root=args.dataset,
                progress=not args.no_progress,
                description=run_name,
            )
        )
        run_names.append(run_name)
    return results, run_names, architecture


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Any]]:
    """Runs the evaluation; returns the JSON objects by path label."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    filepaths = collect_images(args.dataset)
    if not filepaths:
        parser.error(f"no images found in {args.dataset}")
    device = "cpu"
    if args.cuda:
        if torch.cuda.is_available():
            device = "cuda"
        else:
            print("eval_rd: CUDA is not available, running on the CPU", file=sys.stderr)
    threads, coder = torch.get_num_threads(), compressai.get_entropy_coder()
    torch.set_num_threads(args.threads)
    compressai.set_entropy_coder(args.entropy_coder)
    try:
        results, run_names, architecture = _evaluate_runs(args, filepaths, device)
    finally:
        torch.set_num_threads(threads)
        compressai.set_entropy_coder(coder)

    name = args.name
    if name is None:
        stem = (
            architecture if architecture.startswith("psic-") else f"psic-{architecture}"
        )
        name = f"{stem}-{args.metric}" if args.qualities else stem
    outputs = {}
    for condition in args.conditions:
        label = condition_label(condition)
        outputs[label] = rd_json(
            f"{name}-{label}",
            results,
            label,
            run_names=run_names,
            entropy_coder=args.entropy_coder,
            per_image=args.per_image,
            note=f"random-init weights, seed {args.seed}" if args.random_init else "",
        )

    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for label, data in outputs.items():
            path = args.output_dir / f"{name}-{label}.json"
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        plot_rd(list(outputs.values()), args.output_dir / "rd.png")
    print(json.dumps(outputs, indent=2))
    return outputs


if __name__ == "__main__":
    main(sys.argv[1:])
