"""``psic keygen``: a new publisher's key, in a file only its owner can read.

A keyed model's protected decode needs the key (``psic decompress --key-file``);
the key never enters a ``.psic`` file, a log or a message. Lose it and the
protected decodes of your files cannot be made again; leak it and its holder
can make them too (the full decode never needed it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .commands import Command
from .output import EXIT_OK

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="KEY",
        help="the key file to write (mode 0600)",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace an existing key file"
    )


def run(args: argparse.Namespace) -> int:
    from ..models.keys import ShieldKey, write_key_file

    path = Path(args.output)
    if path.is_dir():
        from ..errors import CLIError

        raise CLIError(f"{path} is a folder; give the key file's name")
    write_key_file(path, ShieldKey.generate(), force=args.force)
    print(f"wrote {path} (mode 0600): keep it secret and keep a copy")
    return EXIT_OK


COMMAND = Command(
    "keygen",
    "write a new secret key for keyed protected decodes (psic decompress --key-file)",
    add_arguments,
    run,
)
