r"""Thin wrapper: ``python -m compressai_psic.utils.update_model`` (same flags).

Kept so that existing commands keep working; the tool ships in the package.
"""

from __future__ import annotations

from compressai_psic.utils.update_model import *  # noqa: F403
from compressai_psic.utils.update_model import main

if __name__ == "__main__":
    main()
