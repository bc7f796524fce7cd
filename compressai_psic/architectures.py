r"""The registered architectures: CompressAI's six image zoo models and the
official PSIC layout (``psic-hy2018``).

Injection points, per family:

- Ballé/Minnen GDN synthesis (bmshj2018-factorized, bmshj2018-hyperprior,
  mbt2018-mean, mbt2018): the outputs of the third transposed convolution and of
  the inverse GDN after it (``g_s.4``, ``g_s.5``, N channels at ½ resolution).
  Everything before ``g_s.4`` is shared when both paths are decoded together,
  which keeps dual decoding well under two single decodes.
- Cheng 2020 (anchor and attention): the output of the upsampling block that
  reaches ½ resolution, then ``conv1`` and ``conv2`` (before their activations)
  of the last residual block, like the paper's conditional residual blocks.
  Earlier blocks stay shared: a stacked dual decode repeats only the last
  residual block and the final sub-pixel convolution, which keeps it close to
  the cost of one decode next to the autoregressive entropy decoder.
- ``psic-hy2018``: the authors' layout, key for key (see ``SPEC.md``): a scale
  hyperprior whose synthesis is a stack of conditional residual blocks (GELU) and
  upsampling residual blocks, stored under ``g_s_cond.synthesis_transform`` with
  the projections ``_proj1.0``/``_proj2.0`` inside the blocks.

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import torch.nn as nn
from compressai.layers import GDN, ResidualBlock
from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from torch import Tensor

from .registry import InjectionPoint, register_architecture

__all__ = [
    "ConditionalResidualBlock",
    "PSICHyperprior",
    "UpsamplingResidualBlock",
    "ZOO_ARCHITECTURES",
]

#: The CompressAI zoo names, in CompressAI's order.
ZOO_ARCHITECTURES = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)

GDN_POINTS = ("g_s.4", "g_s.5")


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


def cheng_config(state_dict: Mapping) -> Dict[str, int]:
    try:
        return {"N": int(state_dict["g_a.0.conv1.weight"].size(0))}
    except KeyError:
        raise ValueError(
            "Cannot infer N: the state dict has no 'g_a.0.conv1.weight' key"
        ) from None


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)


def _subpel(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(_conv3x3(in_ch, out_ch * 4), nn.PixelShuffle(2))


class ConditionalResidualBlock(nn.Module):
    r"""``h = GELU(conv1(x)) + P1(t)``, ``h = GELU(conv2(h)) + P2(t)``, ``h + skip(x)``.

    The trigger biases are added by the shielded model at the outputs of
    ``act1`` and ``act2`` with the projections ``_proj1`` and ``_proj2``.
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

    def forward(self, x: Tensor) -> Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
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


class PSICHyperprior(ScaleHyperprior):
    r"""Scale hyperprior with the PSIC paper's conditional synthesis.

    ``g_a``, ``h_a``, ``h_s`` and the entropy models are CompressAI's
    :class:`~compressai.models.ScaleHyperprior`; ``g_s`` is

    .. code-block:: none

        y_hat ─► CRB(M→N) ─► Up ─► CRB ─► Up ─► CRB ─► Up ─► CRB ─► conv+PS(2) ─► x_hat

    Shield it (``psic-hy2018``) to get the trigger projections used; checkpoints
    store ``g_s`` as ``g_s_cond.synthesis_transform`` and the condition MLP as
    ``global_cond.beta_mlp``.
    """

    def __init__(self, N: int = 192, M: int = 320, trigger_dim: int = 512, **kwargs):
        super().__init__(N, M, **kwargs)
        self.trigger_dim = int(trigger_dim)
        self.g_s = nn.Sequential(
            ConditionalResidualBlock(M, N, trigger_dim),
            UpsamplingResidualBlock(N, N),
            ConditionalResidualBlock(N, N, trigger_dim),
            UpsamplingResidualBlock(N, N),
            ConditionalResidualBlock(N, N, trigger_dim),
            UpsamplingResidualBlock(N, N),
            ConditionalResidualBlock(N, N, trigger_dim),
            _subpel(N, 3),
        )


def _psic_points(model: nn.Module) -> List[InjectionPoint]:
    points = []
    for index in (0, 2, 4, 6):
        for act, proj in (("act1", "_proj1"), ("act2", "_proj2")):
            points.append(
                InjectionPoint(
                    f"g_s.{index}.{act}",
                    channels=model.N,
                    projection=f"g_s.{index}.{proj}",
                )
            )
    return points


def _register_all() -> Dict[str, type]:
    classes = {}
    gdn_family = {
        "bmshj2018-factorized": FactorizedPrior,
        "bmshj2018-hyperprior": ScaleHyperprior,
        "mbt2018-mean": MeanScaleHyperprior,
        "mbt2018": JointAutoregressiveHierarchicalPriors,
    }
    for name, cls in gdn_family.items():
        classes[name] = register_architecture(
            name,
            cls,
            GDN_POINTS,
            override=True,
            description=f"{cls.__name__}; biases after g_s.4 and g_s.5",
        )
    for name, cls in (
        ("cheng2020-anchor", Cheng2020Anchor),
        ("cheng2020-attn", Cheng2020Attention),
    ):
        classes[name] = register_architecture(
            name,
            cls,
            last_residual_block_points,
            config_from_state_dict=cheng_config,
            override=True,
            description=f"{cls.__name__}; biases in the last residual block",
        )
    classes["psic-hy2018"] = register_architecture(
        "psic-hy2018",
        PSICHyperprior,
        _psic_points,
        anchor_full=False,
        key_aliases={"g_s.": "g_s_cond.synthesis_transform."},
        override=True,
        description="official PSIC scale hyperprior (authors' checkpoint layout)",
    )
    return classes


SHIELDED_CLASSES = _register_all()
