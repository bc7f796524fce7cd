r"""Start-up time of the ``psic`` command line: min/median/max wall clock.

Each command runs ``--repeats`` times in a fresh interpreter (interleaved, so
that a busy spell of a shared machine hits every command alike). ``psic info``
reads a ``.psic`` file made once, beforehand, with the shipped demo codec.
``import torch`` is timed as the reference of what the light commands avoid.

Example (the BENCHMARKS.md figures)::

    python tools/bench_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["build_parser", "commands", "main"]

PSIC = [sys.executable, "-m", "compressai_psic"]


def commands(psic_file: Path) -> Dict[str, List[str]]:
    """Name → argv of every timed command."""
    return {
        "psic --help": PSIC + ["--help"],
        "psic info FILE": PSIC + ["info", str(psic_file)],
        "train --help": [sys.executable, "-m", "compressai_psic.train", "--help"],
        "eval_model --help": [
            sys.executable,
            "-m",
            "compressai_psic.utils.eval_model",
            "--help",
        ],
        "import compressai_psic": [sys.executable, "-c", "import compressai_psic"],
        # Registration in compressai.registry: its one route, and its cost.
        "import compressai_psic.models": [
            sys.executable,
            "-c",
            "import compressai_psic.models",
        ],
        "compressai_psic.register()": [
            sys.executable,
            "-c",
            "import compressai_psic; compressai_psic.register()",
        ],
        "import compressai (reference)": [sys.executable, "-c", "import compressai"],
        "import torch (reference)": [sys.executable, "-c", "import torch"],
    }


def _make_file(folder: Path) -> Path:
    from PIL import Image

    image = folder / "photo.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(image)
    target = folder / "photo.psic"
    argv = PSIC + ["compress", str(image), "-o", str(target), "--model", "demo-psic"]
    subprocess.run(argv, check=True, capture_output=True)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command")
    parser.add_argument("--json", type=Path, default=None, help="write the figures")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    args = build_parser().parse_args(argv)
    if args.repeats < 3:
        raise SystemExit("bench_startup: --repeats must be >= 3 (min/median/max)")
    with tempfile.TemporaryDirectory() as folder:
        runs = commands(_make_file(Path(folder)))
        times: Dict[str, List[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, command in runs.items():
                began = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times[name].append(time.perf_counter() - began)
    report = {
        name: {
            "min": round(min(values), 3),
            "median": round(statistics.median(values), 3),
            "max": round(max(values), 3),
            "runs": len(values),
        }
        for name, values in times.items()
    }
    print("| command | min s | median s | max s |")
    print("|---|---|---|---|")
    for name, row in report.items():
        print(f"| `{name}` | {row['min']} | {row['median']} | {row['max']} |")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
