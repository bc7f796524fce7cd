"""The training command's entry point: user errors (a wrong folder, a VLP or
zoo weights that cannot be loaded offline, …) end in one line ``error: …`` and
exit status 2, not a traceback."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

__all__ = ["cli"]


def cli(
    argv: Optional[Sequence[str]] = None, prog: str = "compressai_psic.train"
) -> int:
    """Runs :func:`~compressai_psic.train.main`; returns the exit status."""
    from .arguments import parse_args

    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        # Loaded once the arguments hold: --help and usage errors stay instant.
        from .loop import run

        run(args)
    except (ValueError, OSError, ImportError) as err:
        message = " ".join(str(err).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0
