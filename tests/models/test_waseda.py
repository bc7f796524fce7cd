"""``compressai_psic.models.waseda``: the Cheng 2020 architectures' plans and
config."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from compressai.layers import ResidualBlock, ResidualBlockUpsample

from compressai_psic.models.waseda import (
    cheng_config,
    every_block_points,
    last_residual_block_points,
)


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
