"""``psic demo``: the command of :mod:`compressai_psic.demo`, imported (with
torch) only when ``psic demo`` runs."""

from __future__ import annotations

import argparse

from .commands import Command

__all__ = ["COMMAND", "add_arguments", "check_demo_dependencies", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # compressai_psic.demo imports torch: only ``psic demo`` pays for it.
    from .. import demo

    demo.add_arguments(parser)


def check_demo_dependencies() -> None:
    """Refuses in one line, naming the extra, when the demo VLP cannot load."""
    from ..errors import CLIError

    try:
        import open_clip  # noqa: F401
    except ImportError as err:
        raise CLIError(
            f"psic demo needs open_clip (the demo VLP is an open_clip CLIP), which "
            f"does not import ({err}): pip install 'compressai-psic[demo]'"
        ) from None


def run(args: argparse.Namespace) -> int:
    check_demo_dependencies()
    from .. import demo

    return demo.run(args)


COMMAND = Command(
    "demo",
    "compress generated scenes, decode both paths and ask the demo VLP",
    add_arguments,
    run,
)
