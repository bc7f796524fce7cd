"""Tests written for mutants of ``compressai_psic.models`` that the other tests let
survive (mutation testing with mutmut, see BENCHMARKS.md): each asserts a
behaviour the mutated code would break."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from compressai_psic.models.conditions import FourierConditionEncoder
from compressai_psic.models.synthesis import (
    BLOCK_RUNNERS,
    BlockRunner,
    ShieldedSynthesis,
    TriggerSource,
    register_block_runner,
)


def _projections(points, channels, trigger_dim=4, scale=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    projections = nn.ModuleDict()
    for point in points:
        proj = nn.Linear(trigger_dim, scale * channels, bias=False)
        with torch.no_grad():
            proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen))
        projections[point.replace(".", "-")] = proj
    return projections


def _synthesis(points=("g_s.0", "g_s.2"), affine=False) -> ShieldedSynthesis:
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1))
    projections = _projections(points, 3, scale=2 if affine else 1)
    return ShieldedSynthesis(layers, points, projections, affine=affine)


# ------------------------------------------------------------------ synthesis
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return x + torch.relu(self.conv1(x))


def test_register_block_runner_records_its_sites_and_function():
    def run(block, x, at):
        return x + torch.relu(at("conv1", block.conv1(x)))

    try:
        decorated = register_block_runner(_Block, sites=["conv1"])(run)
        assert decorated is run
        assert BLOCK_RUNNERS[_Block] == BlockRunner(("conv1",), run)
        torch.manual_seed(0)
        layers = nn.Sequential(_Block())
        synthesis = ShieldedSynthesis(
            layers, ["g_s.0.conv1"], _projections(["g_s.0.conv1"], 3)
        )
        x = torch.randn(1, 3, 2, 2)
        trigger = torch.ones(1, 4)
        expected = x + torch.relu(
            layers[0].conv1(x) + synthesis.projections[0][1](trigger).view(1, 3, 1, 1)
        )
        torch.testing.assert_close(synthesis(x, trigger), expected)
        assert torch.equal(synthesis(x, None), layers[0](x))
    finally:
        BLOCK_RUNNERS.pop(_Block, None)


def test_trigger_source_encodes_the_condition_it_is_given():
    torch.manual_seed(0)
    encoder = FourierConditionEncoder(trigger_dim=16, num_frequencies=2)
    source = TriggerSource(encoder, True, "protected")
    like = torch.zeros(1)
    assert torch.equal(source.trigger("full", 1, like), torch.zeros(1, 16))
    assert source.trigger("protected", 1, like).abs().sum() > 0
    # one β per sample: one row per sample
    betas = torch.tensor([0.0, 1.0, 0.5])
    rows = source.trigger(betas, 3, like)
    assert rows.shape == (3, 16)
    assert torch.equal(rows[0], torch.zeros(16))
    torch.testing.assert_close(rows[1:2], source.trigger("protected", 1, like))
    unanchored = TriggerSource(encoder, False, "protected")
    assert unanchored.trigger("full", 1, like).abs().sum() > 0


def test_trigger_source_follows_the_device_and_dtype_of_the_features():
    torch.manual_seed(0)
    source = TriggerSource(FourierConditionEncoder(4, 2), True, "protected")
    double = source.trigger("protected", 1, torch.zeros(1, dtype=torch.float64))
    assert double.dtype == torch.float64
    meta = source.trigger("protected", 1, torch.empty(1, device="meta"))
    assert meta.device.type == "meta"
    assert meta.dtype == torch.float32


@pytest.mark.parametrize("affine", [False, True])
def test_a_slice_keeps_the_points_and_the_modulation(affine):
    synthesis = _synthesis(affine=affine)
    tail = synthesis[1:]
    assert isinstance(tail, ShieldedSynthesis)
    assert tail.affine is affine
    assert tail.points == ("g_s.2",)
    x = torch.randn(2, 3, 2, 2)
    trigger = torch.randn(1, 4)
    h = synthesis[:1](x, trigger)
    torch.testing.assert_close(tail(h, trigger), synthesis(x, trigger))


def test_extra_repr_names_the_points_and_the_modulation():
    bias = _synthesis(points=("g_s.0",))
    assert bias.extra_repr() == "points=['g_s.0'], modulation=bias"
    affine = _synthesis(points=("g_s.2",), affine=True)
    assert affine.extra_repr() == "points=['g_s.2'], modulation=affine"
