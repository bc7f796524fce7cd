r"""Plots of shielded codecs: rate–distortion curves and the privacy Pareto plot.

RD curves, from ``eval_model`` JSON files (this package's, one per path, or
CompressAI's own), with the BD-rate of every curve against an anchor::

    python -m compressai_psic.utils.plot out/psic-x-full.json \
        out/psic-x-protected.json bmshj2018-hyperprior.json -o rd.png \
        --anchor bmshj2018-hyperprior.json

Protected quality against protected Recall@1 over a sweep of codecs (see
:mod:`compressai_psic.utils.pareto`)::

    python -m compressai_psic.utils.plot pareto sweep/*.json -o pareto.png

Unlike ``python -m compressai.utils.plot``, which only shows the figure unless
given ``-o``, the figure is always written (``rd.png`` by default); existing
files are not replaced without ``-f/--force``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import OneLineArgumentParser

__all__ = ["METRIC_LABELS", "build_parser", "main", "plot_rd"]

#: Quality keys of ``results`` and their axis labels (MS-SSIM in dB).
METRIC_LABELS = {"psnr-rgb": "PSNR (RGB) [dB]", "ms-ssim-rgb": "MS-SSIM (RGB) [dB]"}


def plot_rd(
    curves: Sequence[Mapping[str, Any]],
    output_file: Path,
    metrics: Sequence[str] = ("psnr-rgb", "ms-ssim-rgb"),
    title: Optional[str] = None,
) -> Path:
    """Draws quality against bpp, one panel per metric that any curve has.

    MS-SSIM is shown as ``-10 log10(1 - MS-SSIM)``, as CompressAI's plot does.
    The protected path of a curve (``"condition": "protected"``) is dashed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def finite(values: Sequence[Any]) -> bool:
        return any(isinstance(v, (int, float)) and math.isfinite(v) for v in values)

    panels = [
        m for m in metrics if any(finite(c["results"].get(m, [])) for c in curves)
    ]
    if not panels:
        raise ValueError(f"no curve has any of {', '.join(metrics)}")
    figure = Figure(figsize=(6.5 * len(panels), 5))
    FigureCanvasAgg(figure)
    for index, metric in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for data in curves:
            results = data["results"]
            pairs = sorted(
                (r, v)
                for r, v in zip(results["bpp"], results.get(metric, []))
                if v is not None and r is not None and math.isfinite(v)
            )
            if metric == "ms-ssim-rgb":
                pairs = [(r, -10 * math.log10(1 - v)) for r, v in pairs if v < 1]
            if not pairs:
                continue
            axes.plot(
                [r for r, _ in pairs],
                [v for _, v in pairs],
                marker="o",
                linewidth=1.2,
                linestyle="--" if data.get("condition") == "protected" else "-",
                label=data.get("name", "?"),
            )
        axes.set_xlabel("Bit-rate [bpp]")
        axes.set_ylabel(METRIC_LABELS.get(metric, metric))
        axes.grid(True, alpha=0.4)
        axes.legend(loc="lower right", fontsize=8)
    figure.suptitle(title or "Rate–distortion (dashed: protected decodes)")
    figure.tight_layout()
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_file, dpi=150)
    return output_file


def build_parser() -> argparse.ArgumentParser:
    """The RD plot's parser (``pareto`` has its own, in :mod:`.pareto`)."""
    parser = OneLineArgumentParser(
        prog="python -m compressai_psic.utils.plot",
        description="RD curves of eval_model JSON files, with BD-rates against an "
        "anchor. 'plot pareto REPORTS...' draws the privacy Pareto plot instead "
        "(see 'plot pareto --help').",
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="eval_model JSON files (this package's or CompressAI's)",
    )
    parser.add_argument(
        "-r",
        "--results-file",
        dest="more_files",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="more JSON files (CompressAI's plot names them with -f; here -f is "
        "--force, as in every tool of the package)",
    )
    parser.add_argument(
        "-m",
        "--metric",
        choices=sorted(METRIC_LABELS),
        default=None,
        help="one metric only (default: PSNR, and MS-SSIM where present)",
    )
    parser.add_argument("-t", "--title", default=None, help="plot title")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("rd.png"),
        help="figure to write (default: %(default)s)",
    )
    parser.add_argument(
        "--anchor",
        default=None,
        help="print the BD-rate of every other curve against this one (one of "
        "the files, or its name)",
    )
    parser.add_argument(
        "--bd-method",
        choices=("akima", "pchip", "cubic"),
        default="akima",
        help="BD interpolation (default: %(default)s)",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace an existing output file"
    )
    return parser


def _anchor_index(anchor: str, files: Sequence[Path], curves: Sequence[Dict]) -> int:
    for index, (path, data) in enumerate(zip(files, curves)):
        if anchor in (str(path), path.name, data.get("name")):
            return index
    names = ", ".join(str(c.get("name")) for c in curves)
    raise ValueError(f"--anchor {anchor!r} is none of the files or names: {names}")


def main(argv: Optional[Sequence[str]] = None) -> Any:
    """RD plot (returns the BD rows), or ``pareto ...`` (returns its summary)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pareto"]:
        from .pareto import main as pareto_main

        return pareto_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.files = [*args.files, *args.more_files]
    if not args.files:
        parser.error("give the eval_model JSON files to plot")
    from .results import check_new_files, load_results

    try:
        check_new_files([args.output], args.force)
        curves = [load_results(path) for path in args.files]
        rows: List[Dict[str, Any]] = []
        if args.anchor is not None:
            from .bd import bd_metrics

            index = _anchor_index(args.anchor, args.files, curves)
            metric = args.metric or "psnr-rgb"
            rows = [
                bd_metrics(curves[index], data, metric, args.bd_method)
                for i, data in enumerate(curves)
                if i != index
            ]
        metrics = [args.metric] if args.metric else list(METRIC_LABELS)
        plot_rd(curves, args.output, metrics, args.title)
    except (OSError, ValueError, ImportError) as err:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(err).split())}\n")
    print(f"wrote {args.output}", file=sys.stderr)
    for row in rows:
        if row["bd_rate"] is None:
            rate = f"n/a ({row.get('note', 'not computable')})"
        else:
            rate = f"{row['bd_rate']:+.2f} %"
        print(f"BD-rate of {row['test']} against {row['anchor']}: {rate}")
    return rows


if __name__ == "__main__":
    main()
