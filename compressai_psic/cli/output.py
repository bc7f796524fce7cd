"""What ``psic`` prints and returns: notes, warnings, errors, exit statuses.

Every user error is one line ``psic: error: ...`` on stderr and exit status
:data:`EXIT_ERROR` (:func:`compressai_psic.errors.one_line` formats it).
"""

from __future__ import annotations

import sys

__all__ = ["EXIT_ERROR", "EXIT_OK", "PROG", "note", "print_error", "warn"]

PROG = "psic"
EXIT_OK = 0
EXIT_ERROR = 2


def note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def print_error(message: str, bar: bool) -> None:
    if bar:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)
