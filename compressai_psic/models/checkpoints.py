r"""Loading shielded models from checkpoint files (safely)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

import torch.nn as nn

from ..state_dicts import load_torch_file, normalize_state_dict
from .registry import ARCHITECTURES, get_architecture, match_architectures
from .upgrade import shield

__all__ = ["guess_architecture", "load_checkpoint"]


def guess_architecture(state_dict: Mapping[str, Any]) -> str:
    """The registered architecture whose model has exactly these weights.

    Asks every registered architecture (a maintainer's own included) to read its
    config from the state dict, then compares parameter names and shapes.
    """
    state_dict = normalize_state_dict(state_dict)
    candidates = match_architectures(state_dict)
    for candidate in candidates:
        if candidate.matches:
            return candidate.name
    message = (
        "No registered architecture has these weights; pass architecture=, one "
        f"of {sorted(ARCHITECTURES)}, or register yours with "
        "compressai_psic.register_architecture"
    )
    failed = [c for c in candidates if c.error is not None]
    if failed:
        # A constructor that raised may be the one meant: its error, chained.
        first = failed[0]
        cause = type(first.error).__name__
        detail = " ".join(str(first.error).split())
        message += (
            f". {first.name} could not be built with {first.config} read from "
            f"them: {cause}{': ' + detail if detail else ''}"
        )
        raise ValueError(message) from first.error
    raise ValueError(message)


def load_checkpoint(
    path: Union[str, os.PathLike],
    architecture: Optional[str] = None,
    map_location: Any = "cpu",
    **kwargs: Any,
) -> nn.Module:
    """Builds a shielded model from a checkpoint file, in eval mode.

    Accepts plain state dicts, CompressAI training checkpoints
    (``{"state_dict": …}``), ``module.``-prefixed keys, CompressAI 1.2.6–1.2.8
    entropy-bottleneck names and the official PSIC layout. Files are read with
    ``torch.load(weights_only=True)``. The architecture is read from the weights
    (:func:`guess_architecture`) unless given; each uses its own registered
    config function. A plain CompressAI checkpoint (no trigger weights) is
    upgraded as :func:`~compressai_psic.models.shield` would (``kwargs`` such as
    ``plan=`` go to it).
    """
    state_dict = normalize_state_dict(load_torch_file(path, map_location))
    arch = get_architecture(architecture or guess_architecture(state_dict))
    internal = arch.to_internal(state_dict)
    if not arch.trigger_argument and not any(
        k.startswith("global_cond.") for k in internal
    ):
        base = arch.model_class(**arch.config(internal))
        base.load_state_dict(state_dict)
        return shield(base, **kwargs).eval()
    return arch.shielded_class.from_state_dict(state_dict, **kwargs).eval()
