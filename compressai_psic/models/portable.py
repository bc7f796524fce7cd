r"""Portable bitstreams: the hyper-synthesis in exact integer arithmetic.

The entropy parameters of the hyperprior models (the scales, and the means of
``mbt2018-mean``) come from the hyper-synthesis ``h_s``. In floating point its
output depends on the order of the sums, hence on the device, the thread count
and the math library, and a last-bit difference can select another entropy
table: the decode desynchronises. Following J. Ballé, N. Johnston, D. Minnen,
`"Integer networks for data compression with latent-variable models"
<https://openreview.net/forum?id=S1zz2i0cY7>`_, ICLR 2019, a *portable* encode
and decode run ``h_s`` as an integer network instead, so every machine computes
the same parameters to the bit:

- activations are fixed-point integers in units of ``2**-FRACTION_BITS``,
  saturated to ``|a| < 2**ACTIVATION_BITS``; the input ``z_hat`` (integer
  symbols plus the entropy bottleneck's medians, the same float32 everywhere)
  is rounded to that grid;
- each convolution's weights are rounded per output channel to
  ``w·2**k`` integers, ``k`` chosen from the channel's largest weight and fan-in
  alone (exact operations: a maximum and exponents) so that every product and
  every partial sum is an integer below ``2**52``; the bias is rounded to the
  accumulator's units;
- the arithmetic is float64, where such integers are exact: the result does not
  depend on the summation order, so convolutions run as matrix products
  (``unfold``/``fold``) on any device and any BLAS;
- between layers the accumulator is scaled back by ``2**-k`` and rounded half
  up (exact), ReLU is exact, LeakyReLU multiplies negative values by its slope
  in 16-bit fixed point and rounds down;
- the last layer's output, in units of ``2**-FRACTION_BITS``, is converted to
  float32 (exact rounding, the same everywhere).

The weights are the trained float ones: no retraining, and the rounding moves
the entropy parameters by about ``2**-12``, which costs little rate
(BENCHMARKS.md, "Portable bitstreams"). ``h_s`` of the supported models is a
:class:`HyperSynthesis`: an ``nn.Sequential`` of the same layers under the same
names (state dicts unchanged) that runs the integer network inside
:func:`portable_mode`. The autoregressive models' context model runs inside the
entropy decoder, position by position; it is not covered (their decodes are
still checked, :mod:`~compressai_psic.models.symbols`).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ACTIVATION_BITS",
    "FRACTION_BITS",
    "PORTABLE_BY_DEFAULT",
    "HyperSynthesis",
    "IntegerConv",
    "IntegerNetwork",
    "install_hyper_synthesis",
    "remove_hyper_synthesis",
    "portable_mode",
    "supports_portable",
]

#: Architectures whose files ``psic compress`` writes portable unless told
#: otherwise: their integer hyper-synthesis costs 1–3 % of a CPU decode at
#: 512×768 (BENCHMARKS.md). mbt2018-mean's larger one (means and scales, 3M/2
#: channels) costs 7–10 %: portable on request only.
PORTABLE_BY_DEFAULT = ("bmshj2018-factorized", "bmshj2018-hyperprior", "psic-hy2018")
#: Fractional bits of the fixed-point activations.
FRACTION_BITS = 12
#: Activations are saturated to ``|a| < 2**ACTIVATION_BITS`` units.
ACTIVATION_BITS = 28
#: Every accumulator stays below ``2**_EXACT_BITS`` (float64 is exact to 2**53).
_EXACT_BITS = 51
_MAX_WEIGHT_BITS = 40
_SLOPE_BITS = 16
#: Bytes of the ``unfold`` buffer per chunk of a convolution.
_CHUNK_BYTES = 32 << 20

_PORTABLE: ContextVar[bool] = ContextVar("compressai_psic_portable", default=False)


@contextlib.contextmanager
def portable_mode(enabled: bool = True) -> Iterator[None]:
    """Every :class:`HyperSynthesis` called inside the block runs its integer
    network (when ``enabled``)."""
    token = _PORTABLE.set(bool(enabled))
    try:
        yield
    finally:
        _PORTABLE.reset(token)


def _pow2(exponent: Tensor) -> Tensor:
    """``2.0**exponent`` in float64, built from its bits (exact on every device,
    where ``ldexp`` may go through ``pow``); ``|exponent| < 1023``."""
    biased = exponent.to(torch.int64) + 1023
    return torch.bitwise_left_shift(biased, 52).view(torch.float64)


def _round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5)


def _saturate(x: Tensor) -> Tensor:
    limit = float(2**ACTIVATION_BITS - 1)
    return x.clamp_(-limit, limit)


@dataclass
class IntegerConv:
    """One convolution of an :class:`IntegerNetwork` (float64 holding integers).

    ``weight`` is ``(out, in, kh, kw)`` for a convolution and ``(in, out, kh,
    kw)`` for a transposed one; ``shift`` the per-output-channel exponent ``k``
    of its weights; ``bias`` in units of ``2**-(FRACTION_BITS + k)``.
    """

    weight: Tensor
    bias: Tensor
    shift: Tensor
    transposed: bool
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    output_padding: Tuple[int, int]

    @classmethod
    def from_module(cls, module: nn.Module) -> IntegerConv:
        transposed = isinstance(module, nn.ConvTranspose2d)
        weight = module.weight.detach().to(torch.float64)
        out_channels = weight.size(1) if transposed else weight.size(0)
        per_output = weight.transpose(0, 1) if transposed else weight
        largest = per_output.abs().reshape(out_channels, -1).amax(dim=1)
        # Each output sums at most in × kh × kw products (fewer when transposed).
        fan_in = weight.numel() // out_channels
        # |w| < 2**e exactly (frexp); products < 2**(A + e + k), fan-in ≤ 2**n.
        _, exponent = torch.frexp(largest)
        budget = _EXACT_BITS - ACTIVATION_BITS - (fan_in - 1).bit_length()
        shift = (budget - exponent).clamp(max=_MAX_WEIGHT_BITS)
        shift = torch.where(largest > 0, shift, torch.zeros_like(shift))
        scale = _pow2(shift)
        view = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
        weight_int = torch.round(weight * scale.view(view))
        bias = module.bias
        if bias is None:
            bias_int = torch.zeros_like(largest)
        else:
            bias64 = bias.detach().to(torch.float64)
            bias_int = torch.round(bias64 * _pow2(shift + FRACTION_BITS))
            limit = float(2**_EXACT_BITS)
            bias_int = bias_int.clamp(-limit, limit)
        return cls(
            weight_int,
            bias_int,
            shift.to(torch.float64),
            transposed,
            tuple(module.stride),
            tuple(module.padding),
            tuple(getattr(module, "output_padding", (0, 0))),
        )

    def __call__(self, x: Tensor) -> Tensor:
        """Integer activations (units ``2**-FRACTION_BITS``) in and out."""
        acc = self._transposed(x) if self.transposed else self._convolution(x)
        acc = acc + self.bias.view(1, -1, 1, 1)
        scale = _pow2(-self.shift)
        return _saturate(_round_half_up(acc * scale.view(1, -1, 1, 1)))

    def _convolution(self, x: Tensor) -> Tensor:
        # One matrix product per kernel tap, on shifted views of the input (no
        # im2col buffer): the sums are exact, so their order does not matter.
        out_ch, in_ch, kh, kw = self.weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        x = F.pad(x, (pw, pw, ph, ph))
        batch, _, height, width = x.shape
        out_h = (height - kh) // sh + 1
        out_w = (width - kw) // sw + 1
        out = x.new_zeros(batch, out_ch, out_h * out_w)
        for i in range(kh):
            for j in range(kw):
                window = x[:, :, i : i + sh * out_h : sh, j : j + sw * out_w : sw]
                out += self.weight[:, :, i, j] @ window.reshape(batch, in_ch, -1)
        return out.view(batch, out_ch, out_h, out_w)

    def _transposed(self, x: Tensor) -> Tensor:
        in_ch, out_ch, kh, kw = self.weight.shape
        batch, _, height, width = x.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        (oh, ow) = self.output_padding
        out_h = (height - 1) * sh - 2 * ph + kh + oh
        out_w = (width - 1) * sw - 2 * pw + kw + ow
        inputs = x.reshape(batch, in_ch, height * width)
        chunk = max(1, _CHUNK_BYTES // (8 * batch * kh * kw * height * width))
        parts = []
        for first in range(0, out_ch, chunk):
            weight = self.weight[:, first : first + chunk]
            matrix = weight.reshape(in_ch, -1).t()
            cols = matrix @ inputs
            parts.append(
                F.fold(
                    cols,
                    (out_h, out_w),
                    (kh, kw),
                    padding=(ph, pw),
                    stride=(sh, sw),
                )
            )
        return torch.cat(parts, dim=1)


class IntegerNetwork:
    """The integer version of a ``Sequential`` of convolutions, ReLU and
    LeakyReLU (see the module docstring); float in, float32 out."""

    def __init__(self, layers: nn.Sequential) -> None:
        self.steps: List[object] = []
        for layer in layers:
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                self.steps.append(IntegerConv.from_module(layer))
            elif isinstance(layer, nn.ReLU):
                self.steps.append("relu")
            elif isinstance(layer, nn.LeakyReLU):
                slope = round(layer.negative_slope * 2**_SLOPE_BITS)
                self.steps.append(("leaky", float(slope)))
            else:  # supports_portable() refuses these
                raise ValueError(f"no integer version of {type(layer).__name__}")

    def __call__(self, x: Tensor) -> Tensor:
        h = x.to(torch.float64) * 2.0**FRACTION_BITS
        h = _saturate(torch.round(h))
        for step in self.steps:
            if isinstance(step, IntegerConv):
                h = step(h)
            elif step == "relu":
                h = h.clamp_(min=0)
            else:
                slope = step[1]
                scaled = torch.floor(h * (slope / 2**_SLOPE_BITS))
                h = torch.where(h < 0, scaled, h)
        return (h * 2.0**-FRACTION_BITS).to(x.dtype)


def _supported_layer(layer: nn.Module) -> bool:
    if isinstance(layer, (nn.ReLU, nn.LeakyReLU)):
        return True
    if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return False
    return (
        layer.groups == 1
        and tuple(layer.dilation) == (1, 1)
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    )


def supports_portable(model: nn.Module) -> bool:
    """Whether ``model`` can code portable bitstreams: no hyper-synthesis
    (``bmshj2018-factorized``: fixed tables), or a ``Sequential`` ``h_s`` of
    convolutions, ReLU and LeakyReLU and no context model (not
    ``mbt2018``/``cheng2020-*``)."""
    if hasattr(model, "context_prediction"):
        return False
    h_s = getattr(model, "h_s", None)
    if h_s is None:
        return True
    return isinstance(h_s, nn.Sequential) and all(_supported_layer(m) for m in h_s)


class HyperSynthesis(nn.Sequential):
    """``h_s`` with an integer twin: the same layers (and state-dict names) run
    in float, or, inside :func:`portable_mode` and not training with gradients,
    as an :class:`IntegerNetwork` (rebuilt when a weight changes)."""

    _integer: Optional[IntegerNetwork] = None
    _integer_key: Optional[tuple] = None

    def forward(self, x: Tensor) -> Tensor:
        if _PORTABLE.get() and not (self.training and torch.is_grad_enabled()):
            return self.integer_network()(x)
        return super().forward(x)

    def integer_network(self) -> IntegerNetwork:
        """The integer network of the current weights."""
        key = tuple(
            (p.data_ptr(), p._version, p.device, p.dtype) for p in self.parameters()
        )
        if self._integer is None or key != self._integer_key:
            self._integer = IntegerNetwork(self)
            self._integer_key = key
        return self._integer


def install_hyper_synthesis(model: nn.Module) -> bool:
    """Makes ``model.h_s`` a :class:`HyperSynthesis` of its own layers when
    :func:`supports_portable`; returns whether the model can code portably."""
    if not supports_portable(model):
        return False
    h_s = getattr(model, "h_s", None)
    if h_s is not None and not isinstance(h_s, HyperSynthesis):
        wrapped = HyperSynthesis(OrderedDict(h_s.named_children()))
        wrapped.train(h_s.training)
        model.h_s = wrapped
    return True


def remove_hyper_synthesis(model: nn.Module) -> None:
    """Makes a :class:`HyperSynthesis` ``h_s`` a plain ``nn.Sequential`` of the
    same layers again (for :func:`~compressai_psic.models.unshield`)."""
    h_s = getattr(model, "h_s", None)
    if isinstance(h_s, HyperSynthesis):
        plain = nn.Sequential(OrderedDict(h_s.named_children()))
        plain.train(h_s.training)
        model.h_s = plain
