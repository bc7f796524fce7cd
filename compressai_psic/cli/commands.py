"""Subcommands and the parser built from them.

A subcommand is a :class:`Command` (name, help line, argument setup, runner)
in :data:`COMMANDS`; :func:`build_parser` gives each its subparser, filling in
only the one that runs, so that a command never imports what another needs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

from ..errors import OneLineArgumentParser
from .output import PROG

__all__ = [
    "COMMANDS",
    "Command",
    "build_parser",
    "register_command",
    "requested_command",
    "version_text",
]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help line, argument setup and runner.

    ``run`` returns the exit status; it raises :class:`CLIError` (or the package's
    format and image errors) for user errors.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: Subcommands by name, in the order ``psic --help`` lists them.
COMMANDS: Dict[str, Command] = {}


def register_command(command: Command) -> Command:
    """Adds a subcommand to ``psic`` (e.g. ``demo``); returns it."""
    COMMANDS[command.name] = command
    return command


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``psic`` argument parser.

    Args:
        command: when given, only that subcommand gets its arguments (the others
            are listed with their help line), so that a command never imports
            what another one needs; by default every subcommand is complete.
    """
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Privacy-shielded image compression (PSIC) for CompressAI models.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=version_text(),
        help="print the versions of psic, CompressAI and PyTorch, and exit",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser
    )
    subparsers.required = True
    for entry in COMMANDS.values():
        sub = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
        if command is None or command == entry.name:
            entry.add_arguments(sub)
        sub.set_defaults(_run=entry.run)
    return parser


def version_text() -> str:
    """``psic X.Y.Z (compressai A, torch B)``, read without importing torch."""
    from importlib import metadata

    from .. import __version__

    parts = []
    for dist in ("compressai", "torch"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return f"{PROG} {__version__} ({', '.join(parts)})"


def requested_command(argv: Sequence[str]) -> str:
    """The subcommand named on the command line ("" when there is none)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return ""
