r"""Checkpoint files and state dicts: safe loading (``weights_only=True``) and
CompressAI's older entropy-bottleneck names. Weights files are written by
:func:`compressai_psic.io.files.save_state_dict`."""

from __future__ import annotations

import functools
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor

__all__ = ["load_torch_file", "normalize_state_dict"]


@functools.lru_cache(maxsize=1)
def _new_entropy_names() -> bool:
    """True when the installed CompressAI names EntropyBottleneck weights
    ``matrices.0`` (1.2.7+), False for the ``_matrix0`` names of 1.2.6."""
    names = [name for name, _ in EntropyBottleneck(1).named_parameters()]
    return any(name.startswith("matrices.") for name in names)


_OLD_EB = re.compile(r"^(.*)\._(matrix|bias|factor)(\d+)$")
_NEW_EB = re.compile(r"^(.*)\.(matrices|biases|factors)\.(\d+)$")
_OLD_TO_NEW = {"matrix": "matrices", "bias": "biases", "factor": "factors"}
_NEW_TO_OLD = {v: k for k, v in _OLD_TO_NEW.items()}


def normalize_state_dict(
    state_dict: Mapping[str, Any], model: Optional[nn.Module] = None
) -> OrderedDict[str, Tensor]:
    """Accepts checkpoints as users have them and returns a plain state dict.

    - unwraps ``{"state_dict": …}`` (CompressAI training checkpoints) and
      ``{"model": …}``;
    - strips ``module.`` prefixes left by ``DataParallel``/``DistributedDataParallel``;
    - renames EntropyBottleneck parameters between CompressAI 1.2.6
      (``_matrix0``) and 1.2.7+ (``matrices.0``) to what is installed. When
      ``model`` is given only its EntropyBottleneck modules are renamed.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"Expected a state dict (a mapping), got {type(state_dict).__name__}"
        )
    for wrapper in ("state_dict", "model"):
        inner = state_dict.get(wrapper)
        if isinstance(inner, Mapping) and inner and wrapper not in inner:
            state_dict = inner
            break
    keys = list(state_dict.keys())
    if keys and all(k.startswith("module.") for k in keys):
        state_dict = OrderedDict(
            (k[len("module.") :], v) for k, v in state_dict.items()
        )

    prefixes = None
    if model is not None:
        prefixes = {
            name
            for name, module in model.named_modules()
            if isinstance(module, EntropyBottleneck)
        }
    new_names = _new_entropy_names()
    pattern = _OLD_EB if new_names else _NEW_EB
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match and (prefixes is None or match.group(1) in prefixes):
            prefix, kind, index = match.groups()
            if new_names:
                key = f"{prefix}.{_OLD_TO_NEW[kind]}.{index}"
            else:
                key = f"{prefix}._{_NEW_TO_OLD[kind]}{index}"
        out[key] = value
    return out


def load_torch_file(
    path: Union[str, os.PathLike], map_location: Any = "cpu"
) -> Dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: no arbitrary code from pickles."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors come in many types
        raise ValueError(
            f"Cannot load {path} safely (weights_only=True): {err}. Only tensors, "
            "dicts, lists and numbers are accepted; re-save the state dict with "
            "torch.save(model.state_dict(), path)"
        ) from err
