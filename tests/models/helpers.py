"""Small randomly initialised models for the core tests."""

from __future__ import annotations

import torch
import torch.nn as nn
from compressai.models import CompressionModel

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
