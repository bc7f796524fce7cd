"""Tests written for mutants of ``compressai_psic.models.psic``, ``google`` and
``waseda`` that the other tests let survive (mutation testing with mutmut, see
BENCHMARKS.md): each asserts a behaviour the mutated code would break.

Survivors left, equivalent (mutmut 3.8.1 names, ``compressai_psic.models.`` left
out): ``psic.xǁConditionalResidualBlockǁ__init____mutmut_29`` / ``_38``
(``nn.Linear(..., bias=False)`` → ``bias=None``): ``nn.Linear`` tests ``if bias``,
so ``None`` builds the same bias-free projection.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from compressai.layers import GDN, ResidualBlock, ResidualBlockUpsample

from compressai_psic.models import PSICHyperprior, PSICHyperpriorBase
from compressai_psic.models.psic import (
    ConditionalResidualBlock,
    UpsamplingResidualBlock,
)
from compressai_psic.models.waseda import (
    cheng_config,
    every_block_points,
    last_residual_block_points,
)


# ----------------------------------------------------------------------- psic
def test_official_defaults_are_the_papers():
    # The authors' checkpoints: N 192, M 320, a 512-wide trigger.
    net = PSICHyperpriorBase()
    assert (net.N, net.M, net.trigger_dim) == (192, 320, 512)
    assert net.g_s[0].conv1.in_channels == 320
    assert net.g_s[0].conv1.out_channels == 192
    assert net.g_s[0]._proj1[0].in_features == 512
    assert ConditionalResidualBlock(4, 6)._proj2[0].in_features == 512


def test_official_base_hands_compressai_its_keyword_arguments():
    with pytest.raises(TypeError, match="no_such_argument"):
        PSICHyperpriorBase(N=8, M=12, trigger_dim=4, no_such_argument=1)
    with pytest.warns(DeprecationWarning, match="init_weights"):
        PSICHyperpriorBase(N=8, M=12, trigger_dim=4, init_weights=True)


def test_trigger_projections_have_no_bias():
    # The authors' files have no bias key: with a bias a fresh model would no
    # longer decode the same image for every condition.
    block = ConditionalResidualBlock(6, 4, trigger_dim=5)
    assert block._proj1[0].bias is None and block._proj2[0].bias is None
    keys = PSICHyperprior(N=8, M=12, trigger_dim=4).state_dict().keys()
    assert not [k for k in keys if "_proj" in k and k.endswith(".bias")]


def test_upsampling_block_is_igdn_of_the_main_path_plus_the_skip():
    torch.manual_seed(0)
    block = UpsamplingResidualBlock(4, 6).eval()
    assert isinstance(block.igdn, GDN) and block.igdn.inverse is True
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        main = block.conv(nn.functional.gelu(block.subpel_conv(x)))
        expected = block.igdn(main) + block.upsample(x)
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_official_synthesis_takes_a_trigger_of_another_dtype():
    torch.manual_seed(0)
    net = PSICHyperprior(N=8, M=12, trigger_dim=4).double().eval()
    for block in (net.g_s[i] for i in (0, 2, 4, 6)):
        nn.init.normal_(block._proj1[0].weight)
    y_hat = torch.randn(1, 12, 2, 3, dtype=torch.float64)
    trigger = torch.randn(1, 4)
    with torch.no_grad():
        mixed = net.g_s(y_hat, trigger)
        same = net.g_s(y_hat, trigger.double())
    assert mixed.dtype == torch.float64
    assert torch.equal(mixed, same)


# --------------------------------------------------------------------- waseda
def _model(*blocks: nn.Module, N: int = 8) -> SimpleNamespace:
    return SimpleNamespace(g_s=nn.Sequential(*blocks), N=N)


def _rb() -> ResidualBlock:
    return ResidualBlock(8, 8)


def test_every_block_points_have_the_width_of_g_s():
    model = _model(_rb(), ResidualBlockUpsample(8, 8), nn.Conv2d(8, 3, 1), _rb())
    points = every_block_points(model)
    assert [p.target for p in points] == [
        "g_s.0.conv1",
        "g_s.0.conv2",
        "g_s.1.subpel_conv",
        "g_s.1.conv",
        "g_s.3.conv1",
        "g_s.3.conv2",
    ]
    assert {p.channels for p in points} == {8}


def test_every_block_points_refuse_a_synthesis_without_blocks():
    with pytest.raises(ValueError) as info:
        every_block_points(_model(nn.Conv2d(8, 3, 1)))
    assert str(info.value) == "g_s has no residual or upsampling residual block"


def test_last_residual_block_points():
    # One residual block, right after the first layer: allowed.
    points = last_residual_block_points(_model(nn.Conv2d(8, 8, 1), _rb()))
    assert [(p.target, p.channels) for p in points] == [
        ("g_s.0", 8),
        ("g_s.1.conv1", None),
        ("g_s.1.conv2", None),
    ]
    message = "g_s has no residual block after its first layer"
    for model in (_model(nn.Conv2d(8, 3, 1)), _model(_rb(), nn.Conv2d(8, 3, 1))):
        with pytest.raises(ValueError) as info:
            last_residual_block_points(model)
        assert str(info.value) == message


def test_cheng_config_names_the_missing_key():
    assert cheng_config({"g_a.0.conv1.weight": torch.zeros(7, 3, 3, 3)}) == {"N": 7}
    with pytest.raises(ValueError) as info:
        cheng_config({})
    assert str(info.value) == (
        "Cannot infer N: the state dict has no 'g_a.0.conv1.weight' key"
    )
