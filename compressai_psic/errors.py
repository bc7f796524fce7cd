"""Errors that several layers raise.

:class:`CLIError` is a user error: ``psic`` reports it as one line on stderr
with exit status 2. Commands below the CLI layer (``psic demo``'s, for one)
raise it without importing :mod:`compressai_psic.cli`.
"""

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""
