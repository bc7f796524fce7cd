r"""Evaluates shielded models on a folder of images, both decode paths, in the
JSON of ``python -m compressai.utils.eval_model``.

Same command shape and flags as CompressAI's tool, plus ``--condition``::

    # trained checkpoints (architecture read from the weights, or -a)
    python -m compressai_psic.utils.eval_model checkpoint kodak/ \
        -p runs/q1/best.pth.tar runs/q2/best.pth.tar -d results/
    # zoo models with PSIC weights from the manifest
    python -m compressai_psic.utils.eval_model pretrained kodak/ \
        -a bmshj2018-hyperprior -q 1,2,3 -d results/ --condition both
    # no weights at all (smoke test): tiny random zoo models
    python -m compressai_psic.utils.eval_model pretrained images/ \
        -a bmshj2018-hyperprior -q 1,2 --random-init --N 16 --M 24

Every image of the folder (searched recursively: Kodak's 24 PNGs, CLIC's
folders) is encoded once and decoded to each path; the rate is the size of the
``.psic`` file ``psic compress`` would write. ``results`` holds CompressAI's five
keys with one value per rate point; each path is one file,
``<output>-<path>.json`` (``<output>``: ``-o`` or the model name), so
``python -m compressai.utils.plot`` or :mod:`compressai_psic.utils.plot` draw
them beside CompressAI's published curves. Numbers that are not finite (the
MS-SSIM of images under 161 pixels) are written as ``null``.

With two or more rate points the BD-rate of the protected path against the full
one is computed (``<output>-bd.json``); ``--anchor base.json`` (CompressAI's own
``eval_model`` result of the base model) adds the BD-rate of each path against
it. Existing files are not replaced without ``-f/--force``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import OneLineArgumentParser, one_line_warnings

__all__ = [
    "build_parser",
    "main",
    "output_files",
    "parse_conditions",
    "parse_qualities",
    "prepare_model",
]

PROG = "eval_model"

#: What ``--condition`` accepts besides a β in [0, 1].
CONDITION_CHOICES = ("protected", "full", "both")

_ZOO = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser; builds without torch so that ``--help`` is instant."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("dataset", type=Path, help="folder of images (recursive)")
    common.add_argument(
        "-a",
        "--architecture",
        default=None,
        help="model architecture: a zoo name (" + ", ".join(_ZOO) + "), "
        "psic-hy2018 (the authors' layout) or any registered one; required for "
        "pretrained, read from the weights for checkpoints",
    )
    common.add_argument(
        "--entropy-coder",
        default="ans",
        help="CompressAI entropy coder (default: %(default)s)",
    )
    common.add_argument("--cuda", action="store_true", help="enable CUDA")
    common.add_argument(
        "--entropy-estimation",
        action="store_true",
        help="rate from the likelihoods of a forward pass (no entropy coding)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="say which model runs"
    )
    common.add_argument(
        "-m",
        "--metric",
        choices=("mse", "ms-ssim"),
        default="mse",
        help="metric trained against (default: %(default)s)",
    )
    common.add_argument(
        "-d",
        "--output_directory",
        "--output-directory",
        dest="output_directory",
        type=Path,
        default=None,
        help="write one JSON per path (and -bd.json, --plot) here; without it the "
        "results are only printed",
    )
    common.add_argument(
        "-o",
        "--output-file",
        default=None,
        help="output name stem: files are <stem>-<path>.json (default: the model name)",
    )
    common.add_argument(
        "--per-image",
        action="store_true",
        help="store the results of each image (key per_image)",
    )
    common.add_argument(
        "--condition",
        dest="conditions",
        nargs="+",
        default=["both"],
        metavar="COND",
        help="paths to decode: protected, full, both (the default) or a beta in "
        "[0, 1]; several may be given",
    )
    common.add_argument(
        "--anchor",
        type=Path,
        default=None,
        metavar="JSON",
        help="eval_model JSON of the base model (e.g. from python -m "
        "compressai.utils.eval_model): BD-rate of each path against it",
    )
    common.add_argument(
        "--bd-method",
        default="akima",
        choices=("akima", "pchip", "cubic"),
        help="interpolation of the BD-rate (bjontegaard package; default %(default)s)",
    )
    common.add_argument(
        "--plot",
        action="store_true",
        help="also draw the RD curves as STEM-rd.png next to the JSON files "
        "(STEM: -o, else the model name, as in STEM-<path>.json)",
    )
    common.add_argument(
        "-f", "--force", action="store_true", help="replace existing output files"
    )
    common.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 (default) as CompressAI's timings",
    )
    common.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr"
    )
    parser = OneLineArgumentParser(
        prog=f"python -m compressai_psic.utils.{PROG}",
        description="Evaluate shielded models on an image folder, per decode path "
        "(CompressAI eval_model JSON).",
    )
    sub = parser.add_subparsers(
        dest="source",
        metavar="{pretrained,checkpoint}",
        parser_class=OneLineArgumentParser,
    )
    sub.required = True
    pretrained = sub.add_parser(
        "pretrained",
        parents=[common],
        help="zoo models (PSIC weights from the manifest)",
    )
    pretrained.add_argument(
        "-q",
        "--quality",
        dest="qualities",
        default="1",
        help="qualities, comma-separated (e.g. 1,2,3; default %(default)s)",
    )
    pretrained.add_argument(
        "--random-init",
        action="store_true",
        help="random zoo weights (smoke tests; measures nothing real)",
    )
    pretrained.add_argument("--seed", type=int, default=0, help="--random-init seed")
    pretrained.add_argument("--N", type=int, default=None, help="--random-init N")
    pretrained.add_argument("--M", type=int, default=None, help="--random-init M")
    checkpoint = sub.add_parser(
        "checkpoint", parents=[common], help="checkpoint files, one per rate point"
    )
    checkpoint.add_argument(
        "-p",
        "--path",
        dest="checkpoint_paths",
        nargs="+",
        required=True,
        help="checkpoint paths",
    )
    checkpoint.add_argument(
        "--no-update",
        action="store_true",
        help="keep the CDF tables stored in the checkpoints",
    )
    return parser


def parse_qualities(text: str) -> List[int]:
    """``"1,2,3"`` → ``[1, 2, 3]`` (sorted, unique)."""
    try:
        qualities = sorted({int(q) for q in text.replace(" ", ",").split(",") if q})
    except ValueError:
        raise ValueError(
            f"invalid -q {text!r}: give integers separated by commas, e.g. 1,2,3"
        ) from None
    if not qualities:
        raise ValueError("-q names no quality")
    return qualities


def parse_conditions(values: Sequence[str]) -> List[Any]:
    """``--condition`` values → condition names and βs (``both`` → full,
    protected), in order, without duplicates."""
    out: List[Any] = []
    for value in values:
        if value == "both":
            items: List[Any] = ["full", "protected"]
        elif value in CONDITION_CHOICES:
            items = [value]
        else:
            try:
                beta = float(value)
            except ValueError:
                beta = float("nan")
            if not 0.0 <= beta <= 1.0:
                raise ValueError(
                    f"invalid --condition {value!r}: use one of "
                    f"{', '.join(CONDITION_CHOICES)} or a beta in [0, 1]"
                )
            items = [beta]
        out.extend(item for item in items if item not in out)
    return out


def _label(condition: Any) -> str:
    return condition if isinstance(condition, str) else f"beta{float(condition):g}"


def _strip_suffixes(name: str) -> str:
    path = Path(name)
    while path.suffix in (".tar", ".pth", ".pt", ".ckpt", ".json"):
        path = path.with_suffix("")
    return path.name


def model_name(args: argparse.Namespace) -> str:
    """``psic-<architecture>-<metric>`` (pretrained), ``psic-<architecture>`` or
    the first checkpoint's name (checkpoints)."""
    if args.source == "pretrained":
        return f"psic-{args.architecture}-{args.metric}"
    if args.architecture:
        stem = args.architecture
    else:
        stem = _strip_suffixes(Path(args.checkpoint_paths[0]).name)
    return stem if stem.startswith("psic-") else f"psic-{stem}"


def output_files(
    args: argparse.Namespace, labels: Sequence[str], bd: bool
) -> Dict[str, Path]:
    """Files the run writes (empty without ``-d``): one per path label, ``bd``
    and ``plot``."""
    if args.output_directory is None:
        return {}
    stem = _strip_suffixes(args.output_file) if args.output_file else model_name(args)
    files = {label: args.output_directory / f"{stem}-{label}.json" for label in labels}
    if bd:
        files["bd"] = args.output_directory / f"{stem}-bd.json"
    if args.plot:
        files["plot"] = args.output_directory / f"{stem}-rd.png"
    return files


def prepare_model(model: Any, device: str, update: bool = True) -> Any:
    """Eval mode, one forward pass, fresh CDF tables, on ``device``, warmed up.

    The forward pass matters for mbt2018 and cheng2020: their masked context
    convolution masks its weight in place during the first forward. One
    untimed encode/decode keeps one-off costs out of the first image's times.
    """
    import torch

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


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need no torch, before anything slow."""
    if not args.dataset.is_dir():
        parser.error(f"dataset folder not found: {args.dataset}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    try:
        args.conditions = parse_conditions(args.conditions)
    except ValueError as err:
        parser.error(str(err))
    if args.source == "pretrained":
        if not args.architecture:
            parser.error("pretrained needs -a/--architecture: " + ", ".join(_ZOO))
        try:
            args.qualities = parse_qualities(args.qualities)
        except ValueError as err:
            parser.error(str(err))
        if (args.N is not None or args.M is not None) and not args.random_init:
            parser.error("--N/--M apply to --random-init models only")
    else:
        for path in args.checkpoint_paths:
            if not Path(path).is_file():
                parser.error(f"checkpoint not found: {path}")
    if args.anchor is not None and not args.anchor.is_file():
        parser.error(f"--anchor file not found: {args.anchor}")
    if args.plot and args.output_directory is None:
        parser.error("--plot needs -d/--output_directory")
    if args.output_directory is not None and args.output_directory.is_file():
        parser.error(f"-d {args.output_directory} is a file, not a folder")


def _runs(args: argparse.Namespace) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """(run name, source, header identity) per rate point."""
    from ..io.files import file_sha256

    if args.source == "checkpoint":
        return [
            (Path(p).name, p, {"checkpoint_sha256": file_sha256(p)})
            for p in args.checkpoint_paths
        ]
    seed = args.seed if args.random_init else None
    return [
        (f"q{q}", q, {"quality": q, "metric": args.metric, "seed": seed})
        for q in args.qualities
    ]


def _load(args: argparse.Namespace, source: Any) -> Tuple[Any, bool]:
    """The model of one rate point and whether to update its CDFs."""
    from .. import load_checkpoint, zoo

    if args.source == "checkpoint":
        model = load_checkpoint(source, architecture=args.architecture)
        return model, not args.no_update
    kwargs = {k: v for k, v in (("N", args.N), ("M", args.M)) if v is not None}
    seed = args.seed if args.random_init else None
    model = zoo.build_zoo_model(
        args.architecture, source, args.metric, seed, progress=False, **kwargs
    )
    return model, True


def _check_models(args: argparse.Namespace) -> None:
    """Checks that need the registry (torch), before any model is built."""
    import compressai

    from .. import ARCHITECTURES, zoo

    if args.entropy_coder not in compressai.available_entropy_coders():
        raise ValueError(
            f"invalid --entropy-coder {args.entropy_coder!r}: use one of "
            f"{', '.join(compressai.available_entropy_coders())}"
        )
    if args.architecture and args.architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {args.architecture!r}: use one of "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    if args.source == "pretrained":
        if args.architecture not in zoo.image_models:
            raise ValueError(
                f"pretrained needs a zoo architecture, not {args.architecture!r}: "
                f"{', '.join(zoo.image_models)}"
            )
        top = zoo.MAX_QUALITY[args.architecture]
        bad = [q for q in args.qualities if not 1 <= q <= top]
        if bad:
            raise ValueError(
                f"qualities {bad} out of range 1..{top} for {args.architecture}"
            )


def evaluate(args: argparse.Namespace) -> Dict[str, Any]:
    """Runs every rate point; returns the JSON objects by path label (and
    ``bd-rate`` when computed)."""
    import compressai
    import torch

    from ..evaluation import collect_images, evaluate_dataset, rd_json

    _check_models(args)
    filepaths = collect_images(args.dataset)
    if not filepaths:
        raise ValueError(f"no images found in {args.dataset}")
    device = "cpu"
    if args.cuda:
        if torch.cuda.is_available():
            device = "cuda"
        else:
            print(f"{PROG}: CUDA is not available, running on the CPU", file=sys.stderr)
    threads, coder = torch.get_num_threads(), compressai.get_entropy_coder()
    torch.set_num_threads(args.threads)
    compressai.set_entropy_coder(args.entropy_coder)
    results, run_names = [], []
    try:
        for run_name, source, identity in _runs(args):
            if args.verbose:
                print(f"{PROG}: evaluating {run_name}", file=sys.stderr)
            model, update = _load(args, source)
            model = prepare_model(model, device, update=update)
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
    finally:
        torch.set_num_threads(threads)
        compressai.set_entropy_coder(coder)

    name = model_name(args)
    note = f"random-init weights, seed {args.seed}" if _random(args) else ""
    outputs: Dict[str, Any] = {}
    for condition in args.conditions:
        label = _label(condition)
        outputs[label] = rd_json(
            f"{name}-{label}",
            results,
            label,
            run_names=run_names,
            entropy_coder=args.entropy_coder,
            per_image=args.per_image,
            note=note,
        )
    return outputs


def _random(args: argparse.Namespace) -> bool:
    return getattr(args, "random_init", False)


def bd_rates(
    outputs: Dict[str, Any],
    anchor: Optional[Dict[str, Any]] = None,
    method: str = "akima",
) -> List[Dict[str, Any]]:
    """BD-rates: protected against full, and every path against ``anchor``."""
    from .bd import bd_metrics

    rows = []
    if "full" in outputs and "protected" in outputs:
        rows.append(bd_metrics(outputs["full"], outputs["protected"], method=method))
    if anchor is not None:
        for data in outputs.values():
            rows.append(bd_metrics(anchor, data, method=method))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs the evaluation; prints and returns the JSON objects by path."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    labels = [_label(c) for c in args.conditions]
    points = len(
        args.qualities if args.source == "pretrained" else args.checkpoint_paths
    )
    want_bd = points >= 2 and (len(labels) >= 2 or args.anchor is not None)
    files = output_files(args, labels, want_bd)
    try:
        from .results import check_new_files, load_results

        check_new_files(files.values(), args.force)
        anchor = load_results(args.anchor) if args.anchor is not None else None
        if want_bd:
            from .bd import import_bjontegaard

            import_bjontegaard()  # fail now, not after the evaluation
        start = time.perf_counter()
        with one_line_warnings(PROG):  # an RGBA image, … : one line each
            outputs = evaluate(args)
        if want_bd:
            outputs["bd-rate"] = bd_rates(outputs, anchor, args.bd_method)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        parser.exit(2, f"{PROG}: error: {' '.join(str(err).split())}\n")
    _write(args, files, outputs, anchor)
    if args.verbose:
        print(f"{PROG}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    import json

    from .results import finite_json

    print(json.dumps(finite_json(outputs), indent=2, allow_nan=False))
    return outputs


def _write(
    args: argparse.Namespace,
    files: Dict[str, Path],
    outputs: Dict[str, Any],
    anchor: Optional[Dict[str, Any]],
) -> None:
    from .results import write_json

    for key, path in files.items():
        if key == "plot":
            from .plot import plot_rd

            curves = [v for k, v in outputs.items() if k != "bd-rate"]
            plot_rd(curves + ([anchor] if anchor else []), path)
        elif key == "bd":
            write_json(path, outputs["bd-rate"])
        else:
            write_json(path, outputs[key])
        print(f"{PROG}: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
