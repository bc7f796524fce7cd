r"""Shielded Cheng 2020 models: cheng2020-anchor and cheng2020-attn.

Their synthesis alternates residual blocks (``conv1``, LeakyReLU, ``conv2``,
LeakyReLU, skip) and ×2 upsampling residual blocks (``subpel_conv``, LeakyReLU,
``conv``, IGDN, sub-pixel skip); the attention variant adds attention blocks.

Plans:

- ``every-stage`` (default): the outputs of ``conv1`` and ``conv2`` of every
  residual block and of ``subpel_conv`` and ``conv`` of every upsampling block,
  each followed by a nonlinearity (LeakyReLU or IGDN), at every resolution from
  the latent's to ½: the paper's two biases per conditional block. The biases
  go before the activations because CompressAI applies one shared
  ``leaky_relu`` module twice per block, and a module that runs twice would get
  its bias twice.
- ``late``: the upsampling block that reaches ½ resolution, then ``conv1`` and
  ``conv2`` of the last residual block. A both-path decode repeats only that
  block and the final sub-pixel convolution (cheap next to the autoregressive
  entropy decoder), but the biases can do little more than a fixed pattern.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import torch.nn as nn
from compressai.layers import ResidualBlock, ResidualBlockUpsample
from compressai.models import Cheng2020Anchor, Cheng2020Attention

from .autoregressive import BoundedAutoregressiveDecoding
from .registration import register_architecture
from .registry import InjectionPoint
from .shielded import ShieldedMixin

__all__ = [
    "CHENG_PLANS",
    "ShieldedCheng2020Anchor",
    "ShieldedCheng2020Attention",
    "every_block_points",
    "last_residual_block_points",
]


def every_block_points(model: nn.Module) -> List[InjectionPoint]:
    """Both convolutions of every residual and upsampling block of ``g_s``."""
    points = []
    for index, block in enumerate(model.g_s):
        if type(block) is ResidualBlock:
            names = ("conv1", "conv2")
        elif type(block) is ResidualBlockUpsample:
            names = ("subpel_conv", "conv")
        else:
            continue
        points += [InjectionPoint(f"g_s.{index}.{name}", model.N) for name in names]
    if not points:
        raise ValueError("g_s has no residual or upsampling residual block")
    return points


def last_residual_block_points(model: nn.Module) -> List[InjectionPoint]:
    """The block before the last ``ResidualBlock`` of ``g_s`` (its output) and
    ``conv1``/``conv2`` of that residual block."""
    blocks = [i for i, block in enumerate(model.g_s) if type(block) is ResidualBlock]
    if not blocks or blocks[-1] == 0:
        raise ValueError("g_s has no residual block after its first layer")
    last = blocks[-1]
    return [
        InjectionPoint(f"g_s.{last - 1}", channels=model.N),
        InjectionPoint(f"g_s.{last}.conv1"),
        InjectionPoint(f"g_s.{last}.conv2"),
    ]


#: Injection plans of the Cheng 2020 synthesis transforms.
CHENG_PLANS = {
    "every-stage": every_block_points,
    "late": last_residual_block_points,
}


def cheng_config(state_dict: Mapping) -> Dict[str, int]:
    """``N`` from ``g_a.0.conv1.weight``."""
    try:
        return {"N": int(state_dict["g_a.0.conv1.weight"].size(0))}
    except KeyError:
        raise ValueError(
            "Cannot infer N: the state dict has no 'g_a.0.conv1.weight' key"
        ) from None


@register_architecture(
    "cheng2020-anchor",
    plans=CHENG_PLANS,
    config_from_state_dict=cheng_config,
)
class ShieldedCheng2020Anchor(
    ShieldedMixin, BoundedAutoregressiveDecoding, Cheng2020Anchor
):
    """:class:`~compressai.models.Cheng2020Anchor` with shielded decoding; ``y``
    is decoded in bounds."""


@register_architecture(
    "cheng2020-attn",
    plans=CHENG_PLANS,
    config_from_state_dict=cheng_config,
)
class ShieldedCheng2020Attention(
    ShieldedMixin, BoundedAutoregressiveDecoding, Cheng2020Attention
):
    """:class:`~compressai.models.Cheng2020Attention` with shielded decoding;
    ``y`` is decoded in bounds."""
