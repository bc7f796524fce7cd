"""Helpers shared by the tests: loading a tool script, setting torch threads."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional

import torch

__all__ = ["ROOT", "load_tool", "torch_threads"]

#: The repository root (tools/, zoo/, tests/).
ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
