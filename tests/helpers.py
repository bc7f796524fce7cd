"""Helpers shared by the tests: setting torch threads, what an import loads in
a fresh interpreter. (The tools are imported as modules: ``from tools import x``.)"""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import torch

__all__ = ["HEAVY_MODULES", "ROOT", "modules_loaded_by", "torch_threads"]

#: The repository root (tools/, zoo/, tests/).
ROOT = Path(__file__).resolve().parents[1]

#: The modules that the light commands (``psic --help``, ``psic info``) avoid.
HEAVY_MODULES = ("torch", "compressai", "numpy", "PIL")


@contextlib.contextmanager
def torch_threads(count: Optional[int] = None) -> Iterator[None]:
    """Runs the block with ``count`` torch intra-op threads (unchanged when
    ``None``) and restores the number it found, whatever the block set."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def modules_loaded_by(code: str, modules: Sequence[str] = HEAVY_MODULES) -> List[str]:
    """Those of ``modules`` that are loaded after running ``code`` in a fresh
    interpreter (started in the repository root, so it imports this checkout)."""
    report = f"import sys; print([m for m in {list(modules)!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])
