r"""The ``psic`` command line: compress images to ``.psic`` files and decode them.

.. code-block:: none

    psic compress photo.png -o photo.psic --model demo-psic
    psic decompress photo.psic -o photo.png            # protected image (default)
    psic decompress photo.psic -o photo.png --full     # full image
    psic decompress photo.psic -o photo.png --both     # both, one entropy decoding
    psic info photo.psic
    psic compress photos/ -o encoded/ --model demo-psic   # every image of a folder

The model is a named codec of the manifest (``--model``, e.g. the shipped
``demo-psic``), a shielded zoo model (``--arch``, ``--quality``, ``--metric``), a
checkpoint file (``--checkpoint``, optionally with ``--arch``), or, to try the
pipeline without trained weights, a randomly initialised zoo model
(``--random-init``, seeded so that the decoder rebuilds the same weights). The
file header names the model, and ``decompress`` rebuilds it (finding the weights
of named codecs by their sha256), or refuses a ``--checkpoint`` that is not the
one the file was written with.

Every user error (missing or malformed file, unknown model, mismatch, image too
large, corrupted bitstream) is reported as one line ``psic: error: ...`` on
stderr with exit status 2. Decoding validates the file against the model before
any entropy decoding (:mod:`compressai_psic.models.guard`), so crafted files
cannot crash, hang or exhaust the decoder.

torch and CompressAI are imported only by the commands that code images:
``psic --help`` and ``psic info`` start in a fraction of a second.

Subcommands are entries of :data:`COMMANDS`; adding one (e.g. ``demo``) takes one
:class:`Command` and one :func:`register_command` call. The modules:

- :mod:`~compressai_psic.cli.commands`: :class:`Command`, the registry, the parser;
- :mod:`~compressai_psic.cli.compress`, :mod:`~compressai_psic.cli.decompress`,
  :mod:`~compressai_psic.cli.info`, :mod:`~compressai_psic.cli.demo`: one command
  each;
- :mod:`~compressai_psic.cli.arguments`: options shared by the commands;
- :mod:`~compressai_psic.cli.models`: which model a command uses;
- :mod:`~compressai_psic.cli.jobs`: files and folders, inputs and outputs;
- :mod:`~compressai_psic.cli.output`: notes, warnings, errors, exit statuses.

The codec itself (:class:`ModelSpec`, :func:`compress_tensor`,
:func:`decompress_header`) is :mod:`compressai_psic.io.codec`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..errors import (
    CLIError,
    KeyFileError,
    KeyRequiredError,
    PSICFormatError,
    one_line,
)
from ..io.codec import ModelSpec, compress_tensor, decompress_header
from ..io.images import ImageLoadError
from . import compress, decompress, demo, info, keygen
from .commands import (
    COMMANDS,
    Command,
    build_parser,
    register_command,
    requested_command,
)
from .info import describe_file
from .models import build_model
from .output import EXIT_ERROR, EXIT_OK, PROG

__all__ = [
    "CLIError",
    "COMMANDS",
    "Command",
    "ModelSpec",
    "build_model",
    "build_parser",
    "compress_tensor",
    "decompress_header",
    "describe_file",
    "main",
    "register_command",
]

for _module in (compress, decompress, info, keygen, demo):
    register_command(_module.COMMAND)


def _discard_stdout() -> None:
    """Points stdout at the null device, so that the interpreter's last flush
    does not report the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``psic``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(requested_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_ERROR
    try:
        return int(args._run(args))
    except BrokenPipeError:
        # The reader went away (``psic info x.psic | head -2``): stop quietly.
        _discard_stdout()
        return EXIT_OK
    except (
        CLIError,
        KeyFileError,
        KeyRequiredError,
        PSICFormatError,
        ImageLoadError,
        OSError,
    ) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
