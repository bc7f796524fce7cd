"""``psic demo``: the command of :mod:`compressai_psic.demo`, imported (with
torch) only when ``psic demo`` runs."""

from __future__ import annotations

import argparse

from .commands import Command

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # compressai_psic.demo imports torch: only ``psic demo`` pays for it.
    from .. import demo

    demo.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .. import demo

    return demo.run(args)


COMMAND = Command(
    "demo",
    "compress generated scenes, decode both paths and ask the demo VLP",
    add_arguments,
    run,
)
