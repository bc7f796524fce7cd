"""``psic demo``: its command-line arguments and what it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import CLIError
from .pipeline import FIT_IMAGES, GRID_FILE, LATENT_STEPS, REPORT_FILE, run_demo
from .report import format_table

__all__ = ["add_arguments", "check_output_dir", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``psic demo`` to ``parser``."""
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
        "-f",
        "--force",
        action="store_true",
        help="replace the grid.png and report.json of an earlier run in --output-dir",
    )
    parser.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip the attacks (JPEG, downscaling, colour correction)",
    )
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=None,
        metavar="NAME",
        help="attacks on the protected images (default: all of "
        "compressai_psic.evaluation.attacks.DEFAULT_ATTACKS); e.g. jpeg75 greyworld "
        "affine_fit affine_fit+jpeg75",
    )
    parser.add_argument(
        "--fit-images",
        type=int,
        default=FIT_IMAGES,
        help="validation scenes the informed colour attacks are fitted on "
        "(default %(default)s)",
    )
    vlps = parser.add_mutually_exclusive_group()
    vlps.add_argument(
        "--eval-vlp",
        action="append",
        default=None,
        metavar="SPEC",
        help="a VLP the codec was not trained against (repeatable), reported "
        "separately; a spec of compressai_psic.vlp.build_vlp (default: the "
        "shipped evaluation VLPs, eval-rn and eval-vit, where present)",
    )
    vlps.add_argument(
        "--no-eval-vlps",
        action="store_true",
        help="only the VLP the codec was trained against",
    )
    parser.add_argument(
        "--latent-steps",
        type=int,
        default=LATENT_STEPS,
        help="Adam steps of the latent inversion through the public model, an "
        "attack every holder of the model can run (default %(default)s; 0 skips it)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_output_dir(output_dir: Path, force: bool) -> None:
    """Refuses, before any work, a ``--output-dir`` that is a file, and one that
    holds an earlier run's outputs unless ``force``.

    Raises:
        CLIError: naming the path
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise CLIError(f"--output-dir {output_dir}: exists and is not a folder")
    if force:
        return
    for name in (GRID_FILE, REPORT_FILE):
        if (output_dir / name).exists():
            raise CLIError(
                f"{output_dir / name} exists; pass -f/--force to replace it "
                "or -o another folder"
            )


def run(args: argparse.Namespace) -> int:
    """Runs ``psic demo`` with parsed arguments; prints the table, returns 0.

    Raises:
        CLIError: for a bad argument, or when the demo cannot run (a missing
            model, for example)
    """
    if args.num_images < 2:
        raise CLIError("--num-images must be at least 2 (retrieval needs choices)")
    check_output_dir(args.output_dir, args.force)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run_demo(
            num_images=args.num_images,
            seed=args.seed,
            output_dir=args.output_dir,
            robustness=not args.no_robustness,
            progress=not args.quiet,
            eval_vlps=[] if args.no_eval_vlps else args.eval_vlp,
            attacks=args.attacks,
            fit_images=args.fit_images,
            latent_steps=args.latent_steps,
        )
    except (RuntimeError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(format_table(report))
    print(
        f"\nwrote {report.get('grid')} and {report.get('report')} "
        f"in {report['seconds']:.1f} s"
    )
    return 0
