r"""CLIP weight files: read safely, found in folders, written as OpenAI does.

OpenAI publishes CLIP weights as TorchScript archives, which
``torch.load(..., weights_only=True)`` refuses; :func:`load_clip_state_dict`
reads them (and open_clip's checkpoints) without unpickling arbitrary objects.
:func:`save_torchscript_state_dict` writes such an archive from tensors, so that
tests check the OpenAI path without network access.
"""

from __future__ import annotations

import os
import zipfile
from typing import Dict

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "WEIGHT_SUFFIXES",
    "find_checkpoint_in_dir",
    "is_torchscript_archive",
    "load_clip_state_dict",
    "looks_like_path",
    "save_torchscript_state_dict",
]

#: Suffixes of weight files; a spec value with one of them names a file.
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".tar", ".npz")
# Names open_clip and OpenAI use for weight files inside a directory, best first.
_DIR_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)


def is_torchscript_archive(path: str) -> bool:
    """TorchScript archives (OpenAI CLIP ``.pt`` files) hold ``code/`` and constants."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(name.endswith("constants.pkl") for name in names) and any(
        "/code/" in name for name in names
    )


def load_clip_state_dict(path: str) -> Dict[str, Tensor]:
    r"""Reads a CLIP state dict from a file without unpickling arbitrary objects.

    OpenAI's ``.pt`` files are TorchScript archives, which ``torch.load`` refuses
    with ``weights_only=True``; they are opened with ``torch.jit.load`` (which
    rebuilds TorchScript modules, not arbitrary Python objects) and only their
    tensors are kept. Any other file goes through
    ``torch.load(..., weights_only=True)``; a ``"state_dict"`` entry and a
    ``"module."`` prefix (DataParallel) are unwrapped.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP weights file not found: '{path}'")
    if is_torchscript_archive(path):
        archive = torch.jit.load(path, map_location="cpu")
        state_dict = {k: v.detach().clone() for k, v in archive.state_dict().items()}
        # TorchScript CLIP archives keep these metadata scalars as tensors.
        for key in ("input_resolution", "context_length", "vocab_size"):
            state_dict.pop(key, None)
        return state_dict
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(path, device="cpu"))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"'{path}' does not hold a state dict")
    if all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: v for key, v in checkpoint.items()}
    return checkpoint


def find_checkpoint_in_dir(directory: str, model_name: str) -> str:
    """The weights file of ``model_name`` in ``directory``: one of the names
    open_clip and OpenAI give them, else the only weights file there.

    Raises:
        FileNotFoundError: none, or several files and none of the known names
    """
    candidates = list(_DIR_CHECKPOINT_NAMES)
    # OpenAI's downloader names files after the model ("ViT-B-32.pt", "RN50.pt").
    candidates += [f"{model_name.replace('/', '-')}.pt", f"{model_name}.pt"]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    files = sorted(
        name for name in os.listdir(directory) if name.endswith(WEIGHT_SUFFIXES)
    )
    if len(files) == 1:
        return os.path.join(directory, files[0])
    found = f"; found several: {files}" if files else ""
    raise FileNotFoundError(
        f"No weights for VLP '{model_name}' in directory '{directory}': expected one "
        f"of {candidates}{found}"
    )


def looks_like_path(value: str) -> bool:
    """Whether a ``pretrained`` value names a file (a separator or a weights
    suffix) rather than a tag."""
    return (
        os.sep in value
        or "/" in value
        or (os.altsep is not None and os.altsep in value)
        or value.endswith(WEIGHT_SUFFIXES)
    )


def save_torchscript_state_dict(state_dict: Dict[str, Tensor], path: str) -> str:
    r"""Writes tensors as a TorchScript archive, the format of OpenAI's CLIP files.

    OpenAI publishes CLIP weights as scripted modules (read with
    ``torch.jit.load``); this writes a module tree whose ``state_dict()`` is
    ``state_dict``, so tests can check that such files load without network
    access. An ``input_resolution`` scalar is added, as in OpenAI's files.
    """
    root = nn.Module()
    for key, value in state_dict.items():
        *parents, leaf = key.split(".")
        module = root
        for parent in parents:
            if not hasattr(module, parent):
                module.add_module(parent, nn.Module())
            module = getattr(module, parent)
        module.register_buffer(leaf, value.detach().clone())
    if "visual.conv1.weight" in state_dict and "input_resolution" not in state_dict:
        patch = state_dict["visual.conv1.weight"].shape[-1]
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        root.register_buffer("input_resolution", torch.tensor(patch * grid))
    torch.jit.script(root).save(os.fspath(path))
    return os.fspath(path)
