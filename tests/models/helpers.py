"""Small randomly initialised models, plans and checks shared by the core tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models import CompressionModel, FactorizedPrior

from compressai_psic import zoo
from compressai_psic.models import (
    PSICHyperprior,
    ShieldedFactorizedPrior,
    get_architecture,
)
from compressai_psic.models.conditions import ConditionEncoder


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


def register_toy(name: str, base: type, plans, **kwargs) -> type:
    """Registers a shielded class of ``base`` (declared here, as a maintainer
    declares one) as architecture ``name``; returns the class."""
    from compressai_psic.models import ShieldedMixin, register_architecture

    qualname = f"Shielded_{name.replace('-', '_')}"
    shielded = type(qualname, (ShieldedMixin, base), {"__module__": __name__})
    shielded.__qualname__ = qualname
    return register_architecture(name, plans=plans, **kwargs)(shielded)


def raises_exactly(message: str, function, *args, **kwargs):
    with pytest.raises(ValueError) as info:
        function(*args, **kwargs)
    assert str(info.value) == message


def factorized(**kwargs):
    torch.manual_seed(0)
    return ShieldedFactorizedPrior(N=8, M=12, trigger_dim=4, **kwargs).eval()


def factorized_state():
    torch.manual_seed(0)
    return FactorizedPrior(N=8, M=12).state_dict()


GDN_EVERY = ["g_s.0", "g_s.1", "g_s.2", "g_s.3", "g_s.4", "g_s.5"]


CHENG_ANCHOR_EVERY = [
    f"g_s.{i}.{n}"
    for i, names in (
        (0, ("conv1", "conv2")),
        (1, ("subpel_conv", "conv")),
        (2, ("conv1", "conv2")),
        (3, ("subpel_conv", "conv")),
        (4, ("conv1", "conv2")),
        (5, ("subpel_conv", "conv")),
        (6, ("conv1", "conv2")),
    )
    for n in names
]


EXPECTED_PLANS = {
    "bmshj2018-factorized": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "bmshj2018-hyperprior": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "mbt2018-mean": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "mbt2018": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "cheng2020-anchor": {
        "every-stage": CHENG_ANCHOR_EVERY,
        "late": ["g_s.5", "g_s.6.conv1", "g_s.6.conv2"],
    },
    "cheng2020-attn": {
        # attention blocks at g_s.0 and g_s.5 carry no bias
        "every-stage": [
            f"g_s.{i}.{n}"
            for i, names in (
                (1, ("conv1", "conv2")),
                (2, ("subpel_conv", "conv")),
                (3, ("conv1", "conv2")),
                (4, ("subpel_conv", "conv")),
                (6, ("conv1", "conv2")),
                (7, ("subpel_conv", "conv")),
                (8, ("conv1", "conv2")),
            )
            for n in names
        ],
        "late": ["g_s.7", "g_s.8.conv1", "g_s.8.conv2"],
    },
}


class OddParameterName(nn.Module):
    """A module (not an EntropyBottleneck) whose parameter is named like the
    CompressAI 1.2.6 entropy-bottleneck weights (``_bias0``)."""

    def __init__(self):
        super().__init__()
        self._bias0 = nn.Parameter(torch.zeros(2))


class TinyReluCodec(CompressionModel):
    """A Ballé-style codec (``g_a.0``/``g_a.6`` give N and M) whose ``g_s`` has a
    ReLU, a layer whose channels cannot be inferred."""

    def __init__(self, N: int = 4, M: int = 6):
        super().__init__()
        self.g_a = nn.Sequential(
            nn.Conv2d(3, N, 1), *[nn.Identity() for _ in range(5)], nn.Conv2d(N, M, 1)
        )
        self.g_s = nn.Sequential(nn.Conv2d(M, N, 1), nn.ReLU(), nn.Conv2d(N, 3, 1))
        self.odd = OddParameterName()


class ParameterFreeEncoder(ConditionEncoder):
    """β itself as the trigger, its full condition β = 0.5."""

    trigger_dim = 1

    def condition_values(self, condition, batch_size, device, dtype=torch.float32):
        self.asked = (device, dtype)
        values = torch.as_tensor(condition, dtype=dtype, device=device)
        return values.reshape(-1).expand(batch_size)

    def forward(self, values):
        return values.reshape(-1, 1) + 1

    @property
    def full_condition(self):
        return 0.5


class PicklableCodec(CompressionModel):
    """A user's own model (module level, so that it pickles)."""

    def __init__(self, N=8, M=12):
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.g_a = nn.Sequential(nn.Conv2d(3, N, 5, 2, 2), nn.Conv2d(N, M, 5, 2, 2))
        self.g_s = nn.Sequential(
            nn.ConvTranspose2d(M, N, 5, 2, 2, 1),
            GDN(N, inverse=True),
            nn.ConvTranspose2d(N, 3, 5, 2, 2, 1),
        )

    def forward(self, x):
        y_hat, likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": likelihoods}}


def tiny_config(state_dict):
    return {
        "N": int(state_dict["g_a.0.weight"].size(0)),
        "M": int(state_dict["g_a.1.weight"].size(0)),
    }


class WideCodec(PicklableCodec):
    pass
