r"""Fuzz benchmark of the whole ``.psic`` decode path: N mutants, 0 failures.

Three seed files are made with the shipped demo codec (``demo-psic``) from
procedural scenes (64×64, 96×96, 80×128). Every mutant
(:func:`tools._lib.fuzzing.mutate`: string bytes, header fields, latent
lists, raw bytes, with a **recomputed checksum**) is decoded as ``psic
decompress`` decodes it, in forked children with a time limit per file and an
address-space limit (:func:`tools._lib.fuzzing.run_isolated`), in batches,
by ``--workers`` processes in parallel. The result table counts every outcome;
``crash``, ``hang``, ``memory``, ``nan``, ``size`` and ``uncaught`` are bugs and
make the exit status 1.

Example (the BENCHMARKS.md figure)::

    OMP_WAIT_POLICY=PASSIVE python tools/fuzz_container.py 10000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["build_parser", "main", "make_seeds", "run_shard"]

SEED_SIZES = ((64, 64), (96, 96), (80, 128))

if not __package__:  # run as a script: the harness lives in tools/_lib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_seeds(model: Any, spec: Any, sha256: str) -> List[bytes]:
    """``.psic`` bytes of three procedural scenes coded with ``model``."""
    import numpy as np

    from compressai_psic.datasets.scenes import render_scene, sample_scene
    from compressai_psic.io import container
    from compressai_psic.io.codec import compress_tensor
    from compressai_psic.io.images import pil_to_tensor

    rng = np.random.default_rng(0)
    seeds = []
    for height, width in SEED_SIZES:
        image = render_scene(sample_scene(rng), size=max(height, width))
        x = pil_to_tensor(image)[..., :height, :width]
        seeds.append(container.dumps(compress_tensor(model, x, spec, sha256)))
    return seeds


def run_shard(args: argparse.Namespace) -> Dict[str, Any]:
    """Decodes the mutants ``shard, shard + workers, ...``; returns the figures."""
    import torch

    torch.set_num_threads(1)
    from compressai_psic import cli
    from compressai_psic.io import container
    from compressai_psic.io.files import file_sha256
    from compressai_psic.models import guard as decode_guard
    from compressai_psic.system import peak_rss_mib
    from compressai_psic.zoo import named_codec_file
    from tools._lib import fuzzing

    if args.unguarded:
        _disable_guard(decode_guard, args.max_pixels)
    path = named_codec_file(args.model, progress=False)
    sha256 = file_sha256(path)
    spec = cli.ModelSpec(architecture=None, checkpoint=path)
    model, _ = cli.build_model(spec)
    seeds = make_seeds(model, spec, sha256)
    identity = fuzzing.model_identity(model.architecture, checkpoint_sha256=sha256)

    def shape_for(height: int, width: int):
        return decode_guard.expected_shape(model, height, width)

    indexes = list(range(args.shard, args.count, args.workers))
    totals = fuzzing.FuzzResult()
    failures = []
    checksummed = 0
    started = time.perf_counter()
    for begin in range(0, len(indexes), args.batch):
        batch = indexes[begin : begin + args.batch]
        mutants = []
        for index in batch:
            rng = random.Random(f"{args.seed}:{index}")
            source = index % len(seeds)
            donors = [s for i, s in enumerate(seeds) if i != source]
            mutant = fuzzing.mutate(seeds[source], rng, donors, shape_for)
            mutants.append(mutant)
            checksummed += container._checksum(mutant[:-16]) == mutant[-16:]
        result = fuzzing.run_isolated(
            model,
            identity,
            mutants,
            timeout=args.timeout,
            memory_mib=args.memory_mib,
            conditions=("protected", "full") if args.both else ("protected",),
            max_pixels=args.max_pixels,
        )
        totals.outcomes.extend(result.outcomes)
        totals.max_seconds = max(totals.max_seconds, result.max_seconds)
        totals.max_rss_mib = max(totals.max_rss_mib, result.max_rss_mib)
        totals.children += result.children
        for position, outcome, detail in result.failures():
            index = batch[position]
            failures.append(
                {
                    "index": index,
                    "outcome": outcome,
                    "detail": detail,
                    "hex": mutants[position].hex(),
                }
            )
    return {
        "mutants": len(indexes),
        "checksum_valid": checksummed,
        "counts": totals.counts(),
        "max_decode_seconds": round(totals.max_seconds, 3),
        "max_child_rss_mib": round(totals.max_rss_mib, 1),
        "parent_rss_mib": round(peak_rss_mib(), 1),
        "children": totals.children,
        "seconds": round(time.perf_counter() - started, 1),
        "failures": failures,
    }


def _disable_guard(decode_guard: Any, limit: Optional[int]) -> None:
    """Skips the model-side checks (the parser and the pixel limit of the
    declared size stay): shows what the harness catches without them. The
    shielded model and the codec look the guard's functions up in its module,
    so replacing them there switches the checks off everywhere."""

    def unchecked(model, strings, shape, max_pixels=None, image_size=None):
        if image_size is not None and limit and image_size[0] * image_size[1] > limit:
            raise decode_guard.PixelLimitError("declared size over the limit")

    decode_guard.validate_decode_inputs = unchecked
    decode_guard.pad_strings = lambda model, strings, shape: strings
    decode_guard.check_finite = lambda x_hat: None


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Decode N checksum-repaired mutants of .psic files in isolated "
        "children; report crashes, hangs, memory and NaN outputs."
    )
    parser.add_argument("count", type=int, help="number of mutants (N)")
    parser.add_argument("--seed", type=int, default=0, help="mutation seed")
    parser.add_argument(
        "--workers", type=int, default=2, help="parallel processes (default 2)"
    )
    parser.add_argument(
        "--batch", type=int, default=250, help="mutants per child process"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per file (default 10)"
    )
    parser.add_argument(
        "--memory-mib",
        type=int,
        default=2048,
        help="address space a child may add to what it inherits (default 2048)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=1 << 20,
        help="the decodes' pixel limit (max_pixels; default 2**20)",
    )
    parser.add_argument("--model", default="demo-psic", help="manifest codec name")
    parser.add_argument(
        "--both", action="store_true", help="decode both paths (decompress_multi)"
    )
    parser.add_argument(
        "--unguarded",
        action="store_true",
        help="skip compressai_psic.models.guard (what the harness catches without it)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report")
    parser.add_argument("--shard", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def _merge(reports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    counts: Dict[str, int] = {}
    for report in reports:
        for name, value in report["counts"].items():
            counts[name] = counts.get(name, 0) + value
    return {
        "mutants": sum(r["mutants"] for r in reports),
        "checksum_valid": sum(r["checksum_valid"] for r in reports),
        "counts": counts,
        "max_decode_seconds": max(r["max_decode_seconds"] for r in reports),
        "max_child_rss_mib": max(r["max_child_rss_mib"] for r in reports),
        "parent_rss_mib": max(r["parent_rss_mib"] for r in reports),
        "children": sum(r["children"] for r in reports),
        "failures": [f for r in reports for f in r["failures"]],
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.count < 1 or args.workers < 1 or args.batch < 1:
        raise SystemExit("fuzz_container: N, --workers and --batch must be >= 1")
    if args.shard is not None:
        print(json.dumps(run_shard(args)))
        return 0
    started = time.perf_counter()
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, *forwarded, "--shard", str(shard)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for shard in range(args.workers)
    ]
    reports = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"fuzz_container: a worker exited {process.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    report = _merge(reports)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = f"{_cpu_model()}, {os.cpu_count()} cores"
    report["command"] = "python tools/fuzz_container.py " + " ".join(forwarded)
    failures = sum(report["counts"].get(name, 0) for name in _failure_names())
    print(
        f"{report['mutants']} mutants ({report['checksum_valid']} with a valid "
        f"checksum) in {report['wall_seconds']} s on {report['machine']}"
    )
    for name, value in report["counts"].items():
        print(f"  {name:10s} {value}")
    print(
        f"slowest decode {report['max_decode_seconds']} s, largest child peak RSS "
        f"{report['max_child_rss_mib']} MiB, {report['children']} children"
    )
    print("failures:", failures)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


def _failure_names():
    from tools._lib.fuzzing import FAILURES

    return FAILURES


if __name__ == "__main__":
    sys.exit(main())
