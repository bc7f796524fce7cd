r"""The repository's tools: command-line scripts (``python tools/<name>.py``) that
are also importable modules (``from tools import fuzz_container``), for the tests.

They are not part of the installed package; what only they and the tests use
lives in :mod:`tools._lib`.
"""

from typing import List

__all__: List[str] = []
