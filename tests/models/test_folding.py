"""Fixed-condition decoders with the trigger folded into the convolutions
(models/folding.py): the same decode up to float rounding, the base model's
layers only where the layout allows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressai_psic.models import ZOO_ARCHITECTURES, shield
from compressai_psic.models.folding import ChannelModulation
from compressai_psic.models.shielded import (
    FixedConditionSynthesis,
    FoldedConditionSynthesis,
)

from .helpers import perturb_triggers, tiny_base, tiny_zoo_model


def _latent(net, seed=0):
    channels = next(m for m in net.g_s.modules() if hasattr(m, "in_channels"))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels.in_channels, 4, 6, generator=gen) * 3


@pytest.mark.parametrize("modulation", ["bias", "affine"])
@pytest.mark.parametrize("name", ZOO_ARCHITECTURES)
def test_folded_decoders_decode_as_the_unfolded_ones(name, modulation):
    net = tiny_zoo_model(name)
    if modulation == "affine":
        net = shield(net, modulation="affine")
    perturb_triggers(net, scale=0.05)
    y = _latent(net)
    with torch.no_grad():
        for condition in ("protected", "full", 0.5):
            folded = net.synthesis_for(condition, fold=True)
            assert isinstance(folded, FoldedConditionSynthesis)
            expected = net.synthesis_for(condition)(y)
            found = folded(y)
            scale = float(expected.abs().max())
            assert float((found - expected).abs().max()) <= 1e-5 * scale
    modules = list(folded.synthesis.modules())
    left = sum(isinstance(m, ChannelModulation) for m in modules)
    # GDN syntheses: the points after the inverse GDNs stay; cheng2020's points
    # are all convolution outputs.
    assert left == (0 if name.startswith("cheng2020") else 3)
    # The model's own layers are untouched.
    assert torch.equal(net.synthesis_for("protected")(y), net.g_s(y))


def test_folded_decoders_export_and_fall_back():
    net = tiny_zoo_model("bmshj2018-hyperprior")
    perturb_triggers(net, scale=0.05)
    y = _latent(net)
    decoder = net.synthesis_for("protected", fold=True)
    with torch.no_grad():
        exported = torch.export.export(decoder, (y,)).module()
        torch.testing.assert_close(exported(y), decoder(y))
    # The official layout's blocks take the trigger themselves: not folded.
    official = tiny_base("psic-hy2018")
    assert type(official.synthesis_for(fold=True)) is FixedConditionSynthesis
    # A folded convolution is a copy; the rest are the model's own layers.
    folded = dict(decoder.synthesis.named_children())
    assert folded["0"] is not net.g_s[0] and folded["1"] is net.g_s[1]
    assert isinstance(folded["0"], nn.ConvTranspose2d)
