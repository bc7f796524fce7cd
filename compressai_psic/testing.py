r"""Tiny models and fixtures for tests, smoke runs and benchmarks.

Nothing here downloads anything: the VLPs are small randomly initialised open_clip
models (a few million parameters, mostly the 49,408-token embedding table that
open_clip's real tokenizer needs). They exercise every code path of
:mod:`compressai_psic.vlp` and :mod:`compressai_psic.losses` but protect nothing.
"""

from __future__ import annotations

import os
from typing import Dict

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "save_torchscript_state_dict",
    "tiny_clip",
    "tiny_vlp",
]


def tiny_clip(
    embed_dim: int = 32,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 1,
    context_length: int = 16,
    quick_gelu: bool = True,
    seed: int = 0,
) -> nn.Module:
    r"""A randomly initialised ``open_clip.CLIP`` with a ViT image tower.

    Both towers use ``width`` channels and one attention head per 64 channels,
    which is what OpenAI's state-dict layout assumes, so the model can also be
    saved as an OpenAI-style file (:func:`save_torchscript_state_dict`) and read
    back by :class:`compressai_psic.vlp.OpenCLIPAdapter`.

    Args:
        embed_dim: joint embedding size
        image_size: input resolution of the image tower
        patch_size: ViT patch size (must divide ``image_size``)
        width: transformer width of both towers (a multiple of 64)
        layers: transformer depth of both towers
        context_length: text length in tokens
        quick_gelu: use QuickGELU, as OpenAI's CLIP models do
        seed: seed of the random initialisation (the global RNG is left alone)
    """
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    if width % 64:
        raise ValueError(f"width must be a multiple of 64, got {width}")
    if image_size % patch_size:
        raise ValueError(
            f"patch_size ({patch_size}) must divide image_size ({image_size})"
        )
    vision_cfg = CLIPVisionCfg(
        layers=layers,
        width=width,
        head_width=64,
        patch_size=patch_size,
        image_size=image_size,
    )
    text_cfg = CLIPTextCfg(
        context_length=context_length, width=width, heads=width // 64, layers=layers
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(
            embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=quick_gelu
        )
    return model.eval()


def tiny_vlp(seed: int = 0, autocast: bool = True, **kwargs):
    r"""A :class:`~compressai_psic.vlp.OpenCLIPAdapter` around :func:`tiny_clip`.

    Extra keyword arguments go to :func:`tiny_clip`.
    """
    from .vlp import OpenCLIPAdapter

    model = tiny_clip(seed=seed, **kwargs)
    return OpenCLIPAdapter.from_model(model, autocast=autocast, name=f"tiny:{seed}")


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
