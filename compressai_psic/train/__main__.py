"""``python -m compressai_psic.train``: the training command (see the package)."""

import sys
from typing import List

from .command import cli

__all__: List[str] = []

if __name__ == "__main__":
    sys.exit(cli())
