r"""The official PSIC model (``psic-hy2018``), key for key with the authors' files.

A scale hyperprior whose synthesis is a stack of conditional residual blocks,
which add the trigger projections themselves, and upsampling residual blocks:

.. code-block:: none

    y_hat ─► CRB(M→N) ─► Up ─► CRB ─► Up ─► CRB ─► Up ─► CRB ─► conv+PS(2) ─► x_hat
               ▲               ▲             ▲             ▲
               └─── P1(t), P2(t) in every conditional residual block (8 biases)

Checkpoints store ``g_s`` as ``g_s_cond.synthesis_transform`` and the condition
MLP as ``global_cond.beta_mlp``; β = 1 is the protected decode, β = 0 the full one.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional

import torch.nn as nn
from compressai.layers import GDN
from compressai.models import ScaleHyperprior
from torch import Tensor

from .registration import register_architecture
from .registry import (
    CheckpointLayout,
    InjectionPoint,
    default_config_from_state_dict,
)
from .shielded import ShieldedMixin
from .synthesis import TriggeredSynthesis

__all__ = [
    "ConditionalResidualBlock",
    "PSICHyperprior",
    "PSICHyperpriorBase",
    "PSICSynthesis",
    "UpsamplingResidualBlock",
]


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)


def _subpel(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(_conv3x3(in_ch, out_ch * 4), nn.PixelShuffle(2))


class ConditionalResidualBlock(nn.Module):
    r"""``h = GELU(conv1(x)) + P1(t)``, ``h = GELU(conv2(h)) + P2(t)``, ``h + skip(x)``.

    ``P1``/``P2`` are bias-free projections of the trigger ``t`` (B, T), added per
    channel. Without a trigger the block adds no bias.
    """

    def __init__(self, in_ch: int, out_ch: int, trigger_dim: int = 512):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch)
        self.act1 = nn.GELU()
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.act2 = nn.GELU()
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None
        self._proj1 = nn.Sequential(nn.Linear(trigger_dim, out_ch, bias=False))
        self._proj2 = nn.Sequential(nn.Linear(trigger_dim, out_ch, bias=False))
        # Zero projections: a fresh model decodes the same image for every β.
        nn.init.zeros_(self._proj1[0].weight)
        nn.init.zeros_(self._proj2[0].weight)

    def forward(self, x: Tensor, trigger: Optional[Tensor] = None) -> Tensor:
        h = self.act1(self.conv1(x))
        if trigger is not None:
            h = h + self._proj1(trigger)[:, :, None, None]
        h = self.act2(self.conv2(h))
        if trigger is not None:
            h = h + self._proj2(trigger)[:, :, None, None]
        return h + (x if self.skip is None else self.skip(x))


class UpsamplingResidualBlock(nn.Module):
    """``IGDN(conv(GELU(subpel(x)))) + upsample(x)``, ×2 resolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.subpel_conv = _subpel(in_ch, out_ch)
        self.act = nn.GELU()
        self.conv = _conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.upsample = _subpel(in_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.igdn(self.conv(self.act(self.subpel_conv(x)))) + self.upsample(x)


class PSICSynthesis(TriggeredSynthesis):
    """A sequential synthesis that hands the trigger to its conditional blocks.

    ``g_s(y_hat, trigger)``; without a trigger, the shielded model's default
    condition (see :class:`~compressai_psic.models.synthesis.TriggeredSynthesis`),
    or no bias at all in the unconditioned :class:`PSICHyperpriorBase`.
    """

    def synthesize(self, x: Tensor, trigger: Optional[Tensor]) -> Tensor:
        if trigger is not None:
            self._check_rows(x, trigger)
            trigger = trigger.to(x.dtype)
        for layer in self:
            if isinstance(layer, ConditionalResidualBlock):
                x = layer(x, trigger)
            else:
                x = layer(x)
        return x

    def projection_modules(self) -> Iterator[nn.Module]:
        for layer in self:
            if isinstance(layer, ConditionalResidualBlock):
                yield layer._proj1
                yield layer._proj2


class PSICHyperpriorBase(ScaleHyperprior):
    r"""The unconditioned building block of :class:`PSICHyperprior`.

    CompressAI's :class:`~compressai.models.ScaleHyperprior` with the paper's
    synthesis; on its own it decodes without trigger (no bias). Use
    :class:`PSICHyperprior`, which owns the condition encoder.
    """

    def __init__(self, N: int = 192, M: int = 320, trigger_dim: int = 512, **kwargs):
        super().__init__(N, M, **kwargs)
        self.trigger_dim = int(trigger_dim)
        self.g_s = PSICSynthesis(
            ConditionalResidualBlock(M, N, trigger_dim),
            UpsamplingResidualBlock(N, N),
            ConditionalResidualBlock(N, N, trigger_dim),
            UpsamplingResidualBlock(N, N),
            ConditionalResidualBlock(N, N, trigger_dim),
            UpsamplingResidualBlock(N, N),
            ConditionalResidualBlock(N, N, trigger_dim),
            _subpel(N, 3),
        )


def paper_points(model: nn.Module) -> List[InjectionPoint]:
    """Where the blocks add their biases: after both activations of each CRB."""
    return [
        InjectionPoint(f"g_s.{index}.{act}", channels=model.N)
        for index in (0, 2, 4, 6)
        for act in ("act1", "act2")
    ]


def _config(state_dict: Mapping) -> Dict[str, int]:
    config = default_config_from_state_dict(state_dict)
    proj = state_dict.get("g_s.0._proj1.0.weight")
    if proj is not None:
        config["trigger_dim"] = int(proj.size(1))
    return config


@register_architecture(
    "psic-hy2018",
    plans={"paper": paper_points},
    config_from_state_dict=_config,
    description="official PSIC scale hyperprior (authors' checkpoint layout)",
    layout=CheckpointLayout(
        anchor_full=False,
        trigger_argument=True,
        key_aliases={"g_s.": "g_s_cond.synthesis_transform."},
    ),
)
class PSICHyperprior(ShieldedMixin, PSICHyperpriorBase):
    r"""Scale hyperprior with the conditional synthesis of
    `"Privacy-Shielded Image Compression: Defending Against Exploitation from
    Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_,
    ICML 2025, loading the authors' checkpoints as they are.

    ``decompress(strings, shape)`` decodes the protected image (β = 1);
    ``condition="full"`` (β = 0) the full one. The bias is ``P(t(β))``, not
    anchored at β = 0, as published.
    """
