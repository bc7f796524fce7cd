r"""Fixed-condition decoders with the trigger folded into the convolutions.

For one condition, the change a shielded synthesis makes at a point is a
constant per channel: ``h + b`` (bias) or ``h·(1 + s) + b`` (affine). Where the
point is the output of a convolution (``deconv`` in the Ballé/Minnen syntheses,
``conv1``/``conv2`` of cheng2020's residual blocks), the change folds into that
convolution's weights and bias:

.. math::

    (W * x + c)(1 + s) + b = (W (1 + s)) * x + (c (1 + s) + b)

so a deployed decoder of that condition runs the base model's layers and
nothing more. Points after a nonlinearity (an inverse GDN) stay as a
:class:`ChannelModulation` module: a constant bias there does not commute with
the next layer at the image border. The folded weights differ from the unfolded
computation in the last bits only (the bias joins the sum at another place).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, Optional

import torch
from torch import Tensor, nn

__all__ = ["ChannelModulation", "fold_convolution", "fold_synthesis"]


class ChannelModulation(nn.Module):
    """``x + b`` or ``x·(1 + s) + b`` with fixed per-channel ``s`` and ``b``."""

    def __init__(self, terms: Tensor, affine: bool) -> None:
        super().__init__()
        terms = terms.detach().reshape(-1)
        if affine:
            scale, bias = terms.chunk(2)
            self.register_buffer("scale", 1 + scale)
        else:
            bias = terms
            self.scale = None
        self.register_buffer("bias", bias.clone())

    def forward(self, x: Tensor) -> Tensor:
        view = (-1,) + (1,) * (x.dim() - 2)
        if self.scale is not None:
            x = x * self.scale.view(view)
        return x + self.bias.view(view)


def _foldable(module: nn.Module) -> bool:
    if isinstance(module, nn.ConvTranspose2d):
        return module.groups == 1
    return isinstance(module, nn.Conv2d)


def fold_convolution(conv: nn.Module, terms: Tensor, affine: bool) -> nn.Module:
    """A copy of ``conv`` whose output is ``conv(x)`` changed by ``terms``
    (``b``, or ``[s, b]`` when ``affine``; one row)."""
    folded = copy.deepcopy(conv)
    terms = terms.detach().reshape(-1).to(conv.weight.dtype)
    if affine:
        scale, bias = terms.chunk(2)
        factor = 1 + scale
    else:
        bias, factor = terms, None
    with torch.no_grad():
        if folded.bias is None:
            folded.bias = nn.Parameter(torch.zeros_like(bias))
        if factor is not None:
            out_dim = 1 if isinstance(folded, nn.ConvTranspose2d) else 0
            shape = [1] * folded.weight.dim()
            shape[out_dim] = -1
            folded.weight.mul_(factor.view(shape))
            folded.bias.mul_(factor)
        folded.bias.add_(bias)
    return folded


def _fold_module(module: nn.Module, terms: Tensor, affine: bool) -> Optional[nn.Module]:
    """``module`` with its output changed by ``terms``: a convolution, or a
    sub-pixel convolution (``Sequential(conv, PixelShuffle(r))``, whose output
    channel ``c`` is the convolution's channels ``c·r² … c·r² + r² − 1``);
    ``None`` for anything else."""
    if _foldable(module):
        return fold_convolution(module, terms, affine)
    if (
        isinstance(module, nn.Sequential)
        and len(module) == 2
        and _foldable(module[0])
        and isinstance(module[1], nn.PixelShuffle)
    ):
        repeats = module[1].upscale_factor ** 2
        spread = terms.reshape(-1).repeat_interleave(repeats).reshape(1, -1)
        return nn.Sequential(fold_convolution(module[0], spread, affine), module[1])
    return None


def _fold_block(block: nn.Module, sites: Dict[str, Tensor], affine: bool):
    """A copy of ``block`` with each site folded into the layer that outputs
    it, or ``None`` when a site cannot be folded."""
    block = copy.deepcopy(block)
    for site, terms in sites.items():
        parent_name, _, child = site.rpartition(".")
        parent = block.get_submodule(parent_name) if parent_name else block
        folded = _fold_module(getattr(parent, child), terms, affine)
        if folded is None:
            return None
        setattr(parent, child, folded)
    return block


def fold_synthesis(synthesis: nn.Module, trigger: Tensor) -> Optional[nn.Sequential]:
    """The layers of a :class:`~compressai_psic.models.synthesis.
    ShieldedSynthesis` with ``trigger`` (one row) folded in, as a plain
    ``nn.Sequential``; ``None`` when a point inside a block is not a
    convolution's output (the unfolded decoder is then the one to use)."""
    if trigger.dim() != 2 or trigger.size(0) != 1:
        return None
    with torch.no_grad():
        terms = {p: proj(trigger) for p, proj in synthesis.projections}
    affine = synthesis.affine
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, point, runner in synthesis._steps:
        layer = synthesis._modules[name]
        prefix = f"g_s.{name}."
        if runner is not None:
            sites = {
                p[len(prefix) :]: t for p, t in terms.items() if p.startswith(prefix)
            }
            layer = _fold_block(layer, sites, affine)
            if layer is None:
                return None
        if point is not None and _foldable(layer):
            layer = fold_convolution(layer, terms[point], affine)
            point = None
        layers[name] = layer
        if point is not None:
            layers[f"{name}_trigger"] = ChannelModulation(terms[point], affine)
    return nn.Sequential(layers)
