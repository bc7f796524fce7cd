r"""The ``tiny`` VLP: a small randomly initialised CLIP, for tests and timing.

``build_vlp("tiny")`` (or ``"tiny:<seed>"``, ``--vlp tiny`` in training) gives
:func:`tiny_vlp`: an ``open_clip.CLIP`` with one-layer towers of width 64 at
32×32 pixels (a few million parameters, mostly the 49,408-token embedding table
that open_clip's real tokenizer needs). It downloads nothing and runs every code
path of :mod:`compressai_psic.vlp` and :mod:`compressai_psic.losses` in
milliseconds, but it protects nothing: use it for tests, smoke runs and
benchmarks of the training step, never to train a real codec.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .open_clip import OpenCLIPAdapter

__all__ = ["tiny_clip", "tiny_vlp"]


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
    saved as an OpenAI-style file
    (:func:`~compressai_psic.vlp.files.save_torchscript_state_dict`) and read
    back by :class:`~compressai_psic.vlp.OpenCLIPAdapter`.

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


def tiny_vlp(seed: int = 0, autocast: bool = True, **kwargs) -> OpenCLIPAdapter:
    r"""An :class:`~compressai_psic.vlp.OpenCLIPAdapter` around :func:`tiny_clip`,
    named ``tiny:<seed>`` (the spec that builds it).

    Extra keyword arguments go to :func:`tiny_clip`.
    """
    model = tiny_clip(seed=seed, **kwargs)
    return OpenCLIPAdapter.from_model(model, autocast=autocast, name=f"tiny:{seed}")
