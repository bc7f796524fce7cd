r"""What the A/B benchmarks of the tools share (``tools/bench_guard.py``,
``tools/bench_portable.py``): the command line, the interleaved timing and the
report (a Markdown table, optionally JSON)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

__all__ = ["ab_parser", "interleaved", "report"]


def ab_parser(description: str, models: Sequence[str]) -> argparse.ArgumentParser:
    """``-a`` models, ``-q`` quality, ``--size H W``, ``--repeats``,
    ``--device`` and ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-a", "--architectures", nargs="+", default=list(models))
    parser.add_argument("-q", "--quality", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (process CPU clock, one thread) or cuda (wall clock)",
    )
    parser.add_argument("--json", type=Path, default=None)
    return parser


def interleaved(
    first: Callable[[], Any],
    second: Callable[[], Any],
    repeats: int,
    clock: Callable[[], float],
) -> Dict[str, float]:
    """Times ``first`` then ``second``, ``repeats`` times after one warm-up call
    each: medians of both and min/median/max of the per-repeat ratio
    second/first."""
    first(), second()
    ratios: List[float] = []
    firsts: List[float] = []
    seconds: List[float] = []
    for _ in range(repeats):
        began = clock()
        first()
        middle = clock()
        second()
        end = clock()
        firsts.append(middle - began)
        seconds.append(end - middle)
        ratios.append((end - middle) / (middle - began))
    return {
        "first_s_median": round(statistics.median(firsts), 3),
        "second_s_median": round(statistics.median(seconds), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def report(
    args: argparse.Namespace,
    tool: str,
    bench: Callable[..., Dict[str, Any]],
    header: str,
    row: Callable[[Dict[str, Any]], str],
) -> Dict[str, Any]:
    """Runs ``bench(name, quality, height, width, repeats, device)`` for every
    model with one CPU thread, prints the table, writes ``--json``."""
    if args.repeats < 3:
        raise SystemExit(f"{tool}: --repeats must be >= 3 (min/median/max)")
    import torch

    torch.set_num_threads(1)
    height, width = args.size
    rows = [
        bench(name, args.quality, height, width, args.repeats, args.device)
        for name in args.architectures
    ]
    print(header)
    print("|---" * header.count("|", 1) + "|")
    for values in rows:
        print(row(values))
    result = {"rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result
