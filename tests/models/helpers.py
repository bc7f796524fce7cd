"""Small randomly initialised models for the core tests."""

from __future__ import annotations

import torch
import torch.nn as nn
from compressai.models import CompressionModel

from compressai_psic import zoo
from compressai_psic.models import PSICHyperprior, get_architecture


def tiny_base(name: str) -> CompressionModel:
    """A small base (unshielded) model, ready to code (PSICHyperprior for the
    official layout, which is conditional itself)."""
    torch.manual_seed(0)
    if name == "psic-hy2018":
        model = PSICHyperprior(N=16, M=24, trigger_dim=32)
    elif name.startswith("cheng2020"):
        model = get_architecture(name).model_class(N=16)
    else:
        model = get_architecture(name).model_class(N=16, M=24)
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))  # masks the context convolution in place
    model.update(force=True)
    return model


def perturb_triggers(model: nn.Module, seed: int = 1, scale: float = 0.5) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trigger_parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * scale)


def tiny_zoo_model(name: str, seed: int = 0) -> nn.Module:
    """A shielded zoo model of quality 1 with few channels (``N=8``), seeded,
    ready to code (masks set by one forward pass, CDF tables updated)."""
    kwargs = dict(N=8) if name.startswith("cheng2020") else dict(N=8, M=12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = zoo.image_models[name](1, **kwargs).eval()
    factor = model.downsampling_factor
    with torch.no_grad():
        model(torch.zeros(1, 3, factor, factor))
    model.update(force=True)
    return model


def _last_conv(module: nn.Module) -> nn.Module:
    return [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)][-1]


def _rescale(module: nn.Module, factor: float) -> None:
    layer = _last_conv(module)
    with torch.no_grad():
        layer.weight.mul_(factor)
        if layer.bias is not None:
            layer.bias.mul_(factor)


def calibrated_zoo_model(name: str, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """:func:`tiny_zoo_model` with its random layers rescaled so that, on the
    image ``x``, the latents have the spread of a trained model's (``y`` of
    standard deviation 4, ``z`` 2) and the entropy parameters cover the scale
    table (median scale about 1): random weights otherwise code everything as
    zeros with the smallest scale, and no drift could show."""
    model = tiny_zoo_model(name, seed)
    with torch.no_grad():
        _rescale(model.g_a, 4 / float(model.g_a(x).std()))
        y = model.g_a(x)
        if hasattr(model, "h_a"):
            h_a_input = y.abs() if name == "bmshj2018-hyperprior" else y
            _rescale(model.h_a, 2 / float(model.h_a(h_a_input).std()))
            z_hat = model.entropy_bottleneck(model.h_a(h_a_input))[0]
            params = model.h_s(z_hat)
            if hasattr(model, "entropy_parameters"):
                context = model.context_prediction(y.round())
                params = model.entropy_parameters(torch.cat((params, context), 1))
                _rescale(model.entropy_parameters, 1.5 / float(params.std()))
            else:
                _rescale(model.h_s, 1.5 / float(params.std()))
    model.update(force=True)
    return model
