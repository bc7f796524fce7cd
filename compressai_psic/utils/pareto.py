r"""Quality against privacy over a sweep of trained codecs: the Pareto plot.

Reads several retrieval reports (``tools/eval_retrieval.py --output``, or the
``report.json`` of ``psic demo``), one per trained codec of a sweep (e.g. of
λ_vlp / λ_prot), and plots, for every VLP of the reports (one row of panels per
VLP, titled with its role, "train" or "eval"; figures of different VLPs are never
pooled), the protected decode's PSNR and MS-SSIM against its Recall@1, image→text
and text→image, for the protected decode itself and for any attacked variants
asked for (``--variants protected protected_affine_fit``). Lower Recall@1 and
higher quality are better: each series' Pareto front is drawn as a step line,
the chosen ("shipped") codec is marked with a star, the chance level with a
vertical line and the shipped codec's full-decode quality with a horizontal one.

Writes the PNG (``--output``) and a JSON summary (``--summary``): every point
with its figures, and per VLP, variant, direction and quality measure the labels
on the Pareto front.

Example::

    python -m compressai_psic.utils.plot pareto sweep/l*.json --labels 0.5 1 2 4 \
        --shipped sweep/l2.json --variants protected protected_affine_fit \
        -o pareto.png --summary pareto.json

Existing output files are not replaced without ``-f/--force``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import OneLineArgumentParser

__all__ = [
    "QUALITIES",
    "build_parser",
    "collect_points",
    "load_report",
    "main",
    "pareto_front",
    "plot_pareto",
    "summarise",
    "vlp_entries",
]

DIRECTIONS = ("i2t", "t2i")
#: Quality measures of the protected decode: report key, axis label.
QUALITIES = {"psnr": "protected PSNR [dB]", "ms_ssim": "protected MS-SSIM"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m compressai_psic.utils.plot pareto",
        description="Protected PSNR / MS-SSIM against protected Recall@1 over "
        "several retrieval reports (a sweep), per VLP, with the shipped point.",
    )
    parser.add_argument("reports", type=Path, nargs="+", help="report JSON files")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="one label per report (default: the file names without suffix)",
    )
    parser.add_argument(
        "--shipped",
        default=None,
        help="the shipped codec: one of the report files or labels",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["protected"],
        help="image variants whose Recall@1 is plotted (default: %(default)s)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("pareto.png"),
        help="PNG to write (default: %(default)s)",
    )
    parser.add_argument(
        "--summary", type=Path, default=None, help="JSON summary to write"
    )
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace existing output files"
    )
    return parser


def load_report(path: Path) -> Dict[str, Any]:
    """A report JSON, checked for the figures the plot needs."""
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    if "psnr" not in report or ("vlps" not in report and "recall" not in report):
        raise ValueError(f"{path} is not a retrieval report (no psnr / recall)")
    return report


def vlp_entries(report: Mapping[str, Any]) -> List[Dict[str, Any]]:
    r"""The report's per-VLP entries; a report from before per-VLP evaluation
    gives one entry, its VLP taken as a training VLP."""
    if report.get("vlps"):
        return list(report["vlps"])
    return [
        {
            "role": report.get("vlp_role", "train"),
            "name": report.get("vlp", "vlp"),
            "recall": report["recall"],
        }
    ]


def _key(entry: Mapping[str, Any]) -> str:
    return f"{entry['role']}:{entry['name']}"


def collect_points(
    reports: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    variants: Sequence[str] = ("protected",),
    files: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    r"""One point per report: its quality figures and, per VLP key
    ``"<role>:<name>"``, variant and direction, the Recall@1 (``None`` where the
    report lacks the variant)."""
    points = []
    for index, (report, label) in enumerate(zip(reports, labels)):
        ms_ssim = report.get("ms_ssim") or {}
        dependence = report.get("image_dependence") or {}
        recall: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
        for entry in vlp_entries(report):
            recall[_key(entry)] = {
                variant: {
                    d: entry["recall"][variant][d].get("R@1")
                    if variant in entry["recall"]
                    else None
                    for d in DIRECTIONS
                }
                for variant in ["original", "full", *variants]
            }
        chance = (report.get("chance") or {}).get("i2t", {}).get("R@1")
        if chance is None and report.get("num_images"):
            chance = 1.0 / report["num_images"]
        points.append(
            {
                "label": label,
                "file": files[index] if files else None,
                "model": report.get("model"),
                "bpp": report.get("bpp"),
                "psnr_full": report["psnr"].get("full"),
                "psnr": report["psnr"].get("protected"),
                "ms_ssim_full": ms_ssim.get("full"),
                "ms_ssim": ms_ssim.get("protected"),
                "common_share": dependence.get("common_share"),
                "num_images": report.get("num_images"),
                "chance_R@1": chance,
                "recall": recall,
            }
        )
    return points


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pareto_front(pairs: Sequence[Tuple[Optional[float], Optional[float]]]) -> List[int]:
    r"""Indices of the non-dominated ``(recall, quality)`` pairs, by increasing
    recall: no other pair has recall ≤ and quality ≥ with one of them strict.
    Pairs with a missing value are left out."""
    valid = [i for i, (r, q) in enumerate(pairs) if _finite(r) and _finite(q)]
    front = []
    for i in valid:
        r, q = pairs[i]
        dominated = any(
            pairs[j][0] <= r and pairs[j][1] >= q and pairs[j] != pairs[i]
            for j in valid
        )
        if not dominated:
            front.append(i)
    # Equal pairs are all kept; order by recall, then by quality (descending).
    return sorted(front, key=lambda i: (pairs[i][0], -pairs[i][1]))


def summarise(
    points: Sequence[Mapping[str, Any]],
    variants: Sequence[str],
    shipped: Optional[str],
) -> Dict[str, Any]:
    r"""The JSON summary: the points, and per VLP key, variant, direction and
    quality the labels on the Pareto front."""
    keys = sorted({k for p in points for k in p["recall"]}, key=_role_order)
    pareto: Dict[str, Any] = {}
    for key in keys:
        pareto[key] = {}
        for variant in variants:
            pareto[key][variant] = {}
            for direction in DIRECTIONS:
                by_quality = {}
                for quality in QUALITIES:
                    pairs = [
                        (
                            (p["recall"].get(key, {}).get(variant) or {}).get(
                                direction
                            ),
                            p[quality],
                        )
                        for p in points
                    ]
                    by_quality[quality] = [
                        points[i]["label"] for i in pareto_front(pairs)
                    ]
                pareto[key][variant][direction] = by_quality
    return {
        "variants": list(variants),
        "shipped": shipped,
        "points": [dict(p, shipped=p["label"] == shipped) for p in points],
        "pareto": pareto,
    }


def _role_order(key: str) -> Tuple[int, str]:
    role, _, name = key.partition(":")
    return (0 if role == "train" else 1, name)


def plot_pareto(
    points: Sequence[Mapping[str, Any]],
    variants: Sequence[str],
    output_file: Path,
    shipped: Optional[str] = None,
    title: Optional[str] = None,
) -> Path:
    """Draws the panels (rows: VLPs, training ones first; columns: PSNR and
    MS-SSIM) and saves the PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = sorted({k for p in points for k in p["recall"]}, key=_role_order)
    figure = Figure(figsize=(11.0, 4.2 * len(keys)))
    FigureCanvasAgg(figure)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    markers = {"i2t": "o", "t2i": "s"}
    ship = next((p for p in points if p["label"] == shipped), None)
    for row, key in enumerate(keys):
        role, _, name = key.partition(":")
        for col, (quality, axis_label) in enumerate(QUALITIES.items()):
            axes = figure.add_subplot(len(keys), 2, 2 * row + col + 1)
            for v, variant in enumerate(variants):
                colour = colours[v % len(colours)]
                for direction in DIRECTIONS:
                    pairs = [
                        (
                            (p["recall"].get(key, {}).get(variant) or {}).get(
                                direction
                            ),
                            p[quality],
                        )
                        for p in points
                    ]
                    shown = [
                        i for i, (r, q) in enumerate(pairs) if _finite(r) and _finite(q)
                    ]
                    if not shown:
                        continue
                    axes.scatter(
                        [pairs[i][0] for i in shown],
                        [pairs[i][1] for i in shown],
                        color=colour,
                        marker=markers[direction],
                        alpha=0.8,
                        label=f"{variant} {direction}",
                    )
                    for i in shown:
                        axes.annotate(
                            points[i]["label"],
                            pairs[i],
                            fontsize=6,
                            xytext=(3, 3),
                            textcoords="offset points",
                        )
                    front = pareto_front(pairs)
                    axes.step(
                        [pairs[i][0] for i in front],
                        [pairs[i][1] for i in front],
                        where="post",
                        color=colour,
                        linestyle="--" if direction == "t2i" else "-",
                        linewidth=0.8,
                    )
                    if ship is not None and ship["label"] in [
                        points[i]["label"] for i in shown
                    ]:
                        index = points.index(ship)
                        axes.scatter(
                            [pairs[index][0]],
                            [pairs[index][1]],
                            marker="*",
                            s=260,
                            facecolors="none",
                            edgecolors="black",
                            linewidths=1.2,
                            zorder=5,
                        )
            if ship is not None and _finite(ship.get(f"{quality}_full")):
                axes.axhline(
                    ship[f"{quality}_full"],
                    color="grey",
                    linestyle=":",
                    label="full decode (shipped)",
                )
            chances = [p["chance_R@1"] for p in points if _finite(p["chance_R@1"])]
            if chances:
                axes.axvline(
                    max(chances), color="grey", linestyle="-.", label="chance R@1"
                )
            axes.set_xlim(-0.02, 1.02)
            axes.set_xlabel(f"Recall@1 by {name} ({role})")
            axes.set_ylabel(axis_label)
            axes.set_title(f"{name} — role: {role}", fontsize=9)
            axes.grid(True, alpha=0.3)
            axes.legend(fontsize=6, loc="best")
    suffix = f"; ★ shipped: {shipped}" if shipped else ""
    figure.suptitle((title or "Quality against privacy") + suffix)
    figure.tight_layout()
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_file, dpi=120)
    return output_file


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    labels = args.labels or [path.stem for path in args.reports]
    if len(labels) != len(args.reports):
        parser.error(f"{len(args.reports)} reports but {len(labels)} labels")
    if len(set(labels)) != len(labels):
        parser.error(f"labels must be unique, got {labels}")
    try:
        reports = [load_report(path) for path in args.reports]
    except (OSError, ValueError) as err:
        parser.error(str(err))
    shipped = None
    if args.shipped is not None:
        files = [str(path) for path in args.reports]
        if args.shipped in labels:
            shipped = args.shipped
        elif args.shipped in files:
            shipped = labels[files.index(args.shipped)]
        else:
            parser.error(f"--shipped {args.shipped} is none of the reports or labels")
    from .results import check_new_files

    try:
        check_new_files(
            [args.output, *([args.summary] if args.summary else [])], args.force
        )
    except FileExistsError as err:
        parser.error(str(err))
    points = collect_points(
        reports, labels, args.variants, files=[str(p) for p in args.reports]
    )
    summary = summarise(points, args.variants, shipped)
    plot_pareto(points, args.variants, args.output, shipped, args.title)
    print(f"wrote {args.output}", file=sys.stderr)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.summary}", file=sys.stderr)
    return summary
