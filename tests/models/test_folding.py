"""Fixed-condition decoders with the trigger folded into the convolutions
(models/folding.py): the same decode up to float rounding, the base model's
layers only where the layout allows."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from compressai.layers import GDN
from torch import nn

from compressai_psic.models import ZOO_ARCHITECTURES, folding, shield
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


def _modulated(h, terms, affine):
    """``h`` changed per channel by ``terms`` as the shielded synthesis does."""
    terms = terms.reshape(-1)
    view = (1, -1) + (1,) * (h.dim() - 2)
    if affine:
        scale, bias = terms.chunk(2)
        return h * (1 + scale.view(view)) + bias.view(view)
    return h + terms.view(view)


@pytest.mark.parametrize("affine", [False, True], ids=["bias", "affine"])
def test_channel_modulation_changes_each_channel(affine):
    terms = torch.tensor([[0.5, -2.0, 0.25, 3.0]] if affine else [[1.5, -2.0]])
    module = ChannelModulation(terms, affine)
    assert sorted(dict(module.named_buffers())) == (
        ["bias", "scale"] if affine else ["bias"]
    )
    for shape in [(3, 2, 4, 5), (3, 2)]:
        x = torch.randn(shape)
        torch.testing.assert_close(module(x), _modulated(x, terms, affine))
    # The terms are copied: changing them afterwards changes nothing.
    x = torch.randn(1, 2, 3, 3)
    before = module(x)
    terms.add_(1)
    assert torch.equal(module(x), before)


def _layers():
    torch.manual_seed(0)
    return {
        "conv": nn.Conv2d(3, 3, 3, padding=1),
        "conv-no-bias": nn.Conv2d(3, 3, 3, padding=1, bias=False),
        "conv-groups": nn.Conv2d(3, 3, 3, padding=1, groups=3),
        "deconv": nn.ConvTranspose2d(3, 3, 5, 2, 2, 1),
        "deconv-no-bias": nn.ConvTranspose2d(3, 3, 5, 2, 2, 1, bias=False),
        "subpel-3": nn.Sequential(nn.Conv2d(3, 27, 3, padding=1), nn.PixelShuffle(3)),
    }


@pytest.mark.parametrize("affine", [False, True], ids=["bias", "affine"])
@pytest.mark.parametrize("kind", list(_layers()))
def test_a_folded_layer_outputs_the_modulated_output(kind, affine):
    layer = _layers()[kind]
    gen = torch.Generator().manual_seed(1)
    terms = torch.randn(1, 6 if affine else 3, generator=gen) * 0.5
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    folded = folding._fold_module(layer, terms, affine)
    x = torch.randn(2, 3, 5, 7, generator=gen)
    with torch.no_grad():
        expected = _modulated(layer(x), terms, affine)
        torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
    assert type(folded) is type(layer) and folded is not layer
    for key, value in layer.state_dict().items():  # the layer is left as it was
        assert torch.equal(value, state[key])


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(4, 4, 3, padding=1, groups=2),
        GDN(4, inverse=True),
        nn.Sequential(nn.ReLU(), nn.PixelShuffle(2)),
        nn.Sequential(nn.Conv2d(4, 16, 1), nn.PixelShuffle(2), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 16, 1), nn.ReLU()),
    ],
    ids=["deconv-groups", "gdn", "no-conv", "three-layers", "no-shuffle"],
)
def test_layers_whose_output_is_not_a_convolutions_do_not_fold(layer):
    assert folding._fold_module(layer, torch.zeros(1, 4), False) is None


def test_only_a_single_trigger_row_folds():
    net = tiny_zoo_model("bmshj2018-hyperprior")
    trigger = net.trigger("protected")
    assert isinstance(folding.fold_synthesis(net.g_s, trigger), nn.Sequential)
    assert folding.fold_synthesis(net.g_s, trigger.repeat(2, 1)) is None
    assert folding.fold_synthesis(net.g_s, trigger.reshape(-1)) is None


def test_a_block_folds_each_site_into_its_own_layer_also_a_nested_one():
    torch.manual_seed(0)
    block = nn.Sequential(
        OrderedDict(
            inner=nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
            out=nn.Conv2d(4, 4, 3, padding=1),
        )
    )
    sites = {"inner.0": torch.randn(1, 4), "out": torch.randn(1, 4)}
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        inner = block.inner[1](_modulated(block.inner[0](x), sites["inner.0"], False))
        expected = _modulated(block.out(inner), sites["out"], False)
        folded = folding._fold_block(block, sites, False)
        torch.testing.assert_close(folded(x), expected)
    assert folded is not block and folded.inner[0] is not block.inner[0]
    assert folding._fold_block(block, {"inner.1": torch.randn(1, 4)}, False) is None


@pytest.mark.parametrize("affine", [False, True], ids=["bias", "affine"])
def test_terms_of_another_dtype_fold_in_the_layers_dtype(affine):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    terms = torch.randn(1, 6 if affine else 3, dtype=torch.float64)
    folded = folding.fold_convolution(layer, terms, affine)
    assert folded.weight.dtype == folded.bias.dtype == torch.float32
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        expected = _modulated(layer(x), terms.float(), affine)
        torch.testing.assert_close(folded(x), expected)
