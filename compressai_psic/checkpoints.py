r"""Loading shielded models from checkpoint files (safely)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

import torch.nn as nn

from .registry import ARCHITECTURES, get_architecture
from .utils import load_torch_file, normalize_state_dict

__all__ = ["guess_architecture", "load_checkpoint"]


def guess_architecture(state_dict: Mapping[str, Any]) -> str:
    """Tells the registered architecture of a state dict from its key layout."""
    keys = set(state_dict)
    if any(k.startswith("g_s_cond.synthesis_transform.") for k in keys):
        return "psic-hy2018"
    if "g_a.0.conv1.weight" in keys:
        return (
            "cheng2020-attn"
            if "g_s.0.conv_a.0.conv.0.weight" in keys
            else ("cheng2020-anchor")
        )
    if "context_prediction.weight" in keys:
        return "mbt2018"
    if "h_s.0.weight" in keys:
        # mbt2018-mean's h_s ends with 3M/2 → 2M outputs; bmshj2018's with M.
        last = max(
            (k for k in keys if k.startswith("h_s.") and k.endswith(".weight")),
            key=lambda k: int(k.split(".")[1]),
        )
        m = state_dict["g_a.6.weight"].size(0)
        return (
            "mbt2018-mean"
            if state_dict[last].size(0) == 2 * m
            else ("bmshj2018-hyperprior")
        )
    if "g_a.0.weight" in keys:
        return "bmshj2018-factorized"
    raise ValueError(
        "Cannot tell the architecture of this checkpoint; pass architecture=, one of "
        f"{sorted(ARCHITECTURES)}"
    )


def load_checkpoint(
    path: Union[str, os.PathLike],
    architecture: Optional[str] = None,
    map_location: Any = "cpu",
) -> nn.Module:
    """Builds a shielded model from a checkpoint file.

    Accepts plain state dicts, CompressAI training checkpoints
    (``{"state_dict": …}``), ``module.``-prefixed keys, CompressAI 1.2.6–1.2.8
    entropy-bottleneck names and the official PSIC layout. Files are read with
    ``torch.load(weights_only=True)``. A plain CompressAI checkpoint (no trigger
    weights) is upgraded as :func:`compressai_psic.shield` would.
    """
    from .architectures import SHIELDED_CLASSES

    state_dict = normalize_state_dict(load_torch_file(path, map_location))
    name = architecture or guess_architecture(state_dict)
    arch = get_architecture(name)
    cls = SHIELDED_CLASSES.get(name)
    if cls is None:
        from .models import shielded_class

        cls = shielded_class(arch.model_class, arch)
    if not any(k.startswith("global_cond.") for k in state_dict):
        from .models import shield

        base = arch.model_class.from_state_dict(state_dict)
        return shield(base).eval()
    return cls.from_state_dict(state_dict).eval()
