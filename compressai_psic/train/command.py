"""The training command's entry point: user errors (a wrong folder, a VLP or
zoo weights that cannot be loaded offline, …) end in one line ``error: …`` and
exit status 2, not a traceback."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .loop import main

__all__ = ["cli"]


def cli(
    argv: Optional[Sequence[str]] = None, prog: str = "compressai_psic.train"
) -> int:
    """Runs :func:`~compressai_psic.train.main`; returns the exit status."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (ValueError, OSError, ImportError) as err:
        message = " ".join(str(err).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0
