"""Training checkpoints (save, resume) and the release export of the weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch
import torch.nn as nn

from ..io.files import file_sha256 as sha256_file
from .constants import BEST_CHECKPOINT_NAME, CHECKPOINT_NAME
from .distributed import unwrap

__all__ = ["export_state_dict", "save_checkpoint"]


def _plain(value: Any) -> Any:
    """Arguments as primitives (lists, not tuples) for weights-only checkpoints."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_checkpoint(
    state: Dict[str, Any], is_best: bool, save_dir: Union[str, os.PathLike]
) -> Path:
    """Writes ``checkpoint.pth.tar`` and, when best, ``checkpoint_best_loss.pth.tar``.

    The file is written next to its final name and renamed, so an interrupted
    save never leaves a truncated checkpoint.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / CHECKPOINT_NAME
    partial = save_dir / (CHECKPOINT_NAME + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    if is_best:
        shutil.copyfile(path, save_dir / BEST_CHECKPOINT_NAME)
    return path


def export_state_dict(
    model: nn.Module, out_dir: Union[str, os.PathLike], name: str
) -> Path:
    """Exports a model for release: ``<out_dir>/<name>-<sha256[:8]>.pth.tar``.

    As ``compressai.utils.update_model``: the entropy models' CDFs are updated
    (``update(force=True)``), only the state dict is kept (tensors on the CPU),
    and the name carries the first 8 hex digits of the file's sha256.
    """
    if not name or os.sep in name or "/" in name or name in (".", ".."):
        raise ValueError(f'Invalid export name "{name}": use a plain file stem')
    net = unwrap(model)
    net.update(force=True)
    state = type(net.state_dict())(
        # Tensors to the CPU; extra states (an affine projection's modulation)
        # as they are.
        (key, value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        for key, value in net.state_dict().items()
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f"{name}.pth.tar.partial"
    torch.save(state, partial)
    digest = sha256_file(partial)[:8]
    path = out_dir / f"{name}-{digest}.pth.tar"
    os.replace(partial, path)
    return path


def _load_resume(path: str, device: torch.device) -> Dict[str, Any]:
    from ..state_dicts import load_torch_file

    checkpoint = load_torch_file(path, map_location=device)
    missing = [
        key
        for key in ("epoch", "state_dict", "optimizer", "lr_scheduler")
        if key not in checkpoint
    ]
    if missing:
        raise ValueError(
            f"{path} is not a training checkpoint of this tool (missing {missing}); "
            "use --init to start from weights"
        )
    return checkpoint


def _model_from_resume(checkpoint: Mapping[str, Any], path: str) -> nn.Module:
    from ..models import get_architecture, guess_architecture
    from ..state_dicts import normalize_state_dict

    state_dict = normalize_state_dict(checkpoint["state_dict"])
    name = checkpoint.get("architecture") or guess_architecture(state_dict)
    return get_architecture(name).shielded_class.from_state_dict(state_dict)
