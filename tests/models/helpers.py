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


def calibrated_zoo_model(name: str, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """:func:`tiny_zoo_model` with the spread of a trained model's latents and
    entropy parameters on the image ``x`` (:func:`tools._lib.calibration.
    calibrate`)."""
    from tools._lib.calibration import calibrate

    return calibrate(tiny_zoo_model(name, seed), x)
