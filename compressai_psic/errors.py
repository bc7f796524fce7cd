"""Errors that several layers raise (no torch needed to import them).

:class:`CLIError` is a user error: ``psic`` reports it as one line on stderr
with exit status 2 (:func:`one_line` formats it). Code below the CLI layer
(``psic demo``'s command, the ``.psic`` codec) raises it without importing
:mod:`compressai_psic.cli`.
"""

import argparse
import contextlib
import sys
import warnings
from typing import Iterator, NoReturn

__all__ = [
    "BitstreamError",
    "CLIError",
    "DesyncError",
    "KeyFileError",
    "KeyRequiredError",
    "ModelMismatchError",
    "OneLineArgumentParser",
    "PSICFormatError",
    "PixelLimitError",
    "one_line",
    "one_line_warnings",
]


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


class KeyFileError(ValueError):
    """A key file is missing, malformed or readable by others. Its message never
    holds any of the file's content."""


class KeyRequiredError(ValueError):
    """A keyed model's protected decode was asked without the publisher's key,
    or a key was given where none applies."""


class PSICFormatError(ValueError):
    """A ``.psic`` file (or object to be written) is malformed or unsupported.

    The container (:mod:`compressai_psic.io.container`) raises it for malformed
    files, and decoding raises the subclasses below for bitstreams that do not
    fit the model; nothing else escapes the decode path.
    """


class ModelMismatchError(PSICFormatError):
    """A ``.psic`` file was written by another model than the one decoding it."""


class BitstreamError(PSICFormatError):
    """The strings or the latent shape do not fit the decoding model.

    Raised by :mod:`compressai_psic.models.guard` before any entropy decoding (a
    wrong number of strings, batch sizes that differ, a latent shape that is not
    the one of the declared image, strings that CompressAI's encoder cannot have
    written) and after it, when the decoded image holds non-finite values.
    """


class DesyncError(BitstreamError):
    """The decoder's latent symbols are not the ones the encoder coded.

    The ``.psic`` header carries a CRC-32 of the symbols the encoder quantised
    (:mod:`compressai_psic.models.symbols`); a decode that gets other symbols
    (its entropy parameters differ from the encoder's, e.g. another device, or
    the file was altered) raises this instead of returning a wrong image.
    """


class PixelLimitError(PSICFormatError):
    """Decoding would produce more pixels than the configured limit allows
    (``max_pixels``, default ``compressai_psic.options.MAX_DECODE_PIXELS``)."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, as ``psic`` reports errors: an
    ``OSError`` as ``FILE: reason``, a ``KeyError`` as ``unknown key 'KEY'``."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        text = f"unknown key {exc.args[0]!r}"
    return " ".join(text.split())


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose refusals are one line, ``PROG: error: …``,
    exit status 2, without the usage text (the style of every tool here)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Shows the warnings raised inside as ``PROG: warning: …`` on one line of
    stderr (no category, file name or source line), like ``psic``'s own."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"{prog}: warning: {text}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
