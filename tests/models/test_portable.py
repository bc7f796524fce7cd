"""Portable bitstreams (models/portable.py): the integer hyper-synthesis is
exact, so its output does not depend on threads, oneDNN or summation order."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from compressai.models.utils import conv, deconv
from torch import nn

from compressai_psic.models import ZOO_ARCHITECTURES, portable
from tools._lib.photos import photo_crops

from .helpers import calibrated_zoo_model, tiny_zoo_model
from .test_symbols import (
    caught_or_close,
    decode,
    encode,
    last_bit_flipped,
    threads,
    to_8bit,
)

# torch.backends.mkldnn.flags() warns that TF32 on oneDNN needs an Intel GPU.
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")

PORTABLE = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def _integers(shape, bound, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-bound, bound + 1, shape, generator=gen).to(torch.float64)


@pytest.mark.parametrize(
    "layer",
    [conv(6, 5, kernel_size=3, stride=1), conv(6, 5), deconv(6, 5), deconv(4, 3, 3)],
    ids=["conv3", "conv5-stride2", "deconv5", "deconv3"],
)
def test_integer_convolutions_equal_torchs(layer):
    step = portable.IntegerConv.from_module(layer)
    x = _integers((2, layer.in_channels, 7, 9), 2**20, 0)
    if step.transposed:
        expected = F.conv_transpose2d(
            x, step.weight, None, step.stride, step.padding, step.output_padding
        )
        found = step._transposed(x)
    else:
        expected = F.conv2d(x, step.weight, None, step.stride, step.padding)
        found = step._convolution(x)
    assert torch.equal(found, expected)
    assert torch.equal(found, torch.round(found))


def test_chunking_changes_nothing(monkeypatch):
    layers = nn.Sequential(deconv(8, 8), nn.LeakyReLU(), conv(8, 6, 3, 1), nn.ReLU())
    z = torch.randn(1, 8, 6, 5) * 3
    whole = portable.IntegerNetwork(layers)(z)
    monkeypatch.setattr(portable, "_CHUNK_BYTES", 1)
    assert torch.equal(portable.IntegerNetwork(layers)(z), whole)


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_every_accumulator_is_exact_in_float64(name):
    """The largest weights CompressAI's zoo uses (quality 8), with the largest
    activations: every sum stays below 2**53."""
    from compressai_psic import zoo

    torch.manual_seed(0)
    model = zoo.image_models[name](8)
    for layer in model.h_s:
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        with torch.no_grad():
            layer.weight.mul_(30)  # trained weights are larger than random ones
        step = portable.IntegerConv.from_module(layer)
        weight = step.weight.transpose(0, 1) if step.transposed else step.weight
        worst = weight.abs().flatten(1).sum(1) * (2**portable.ACTIVATION_BITS - 1)
        assert float((worst + step.bias.abs()).max()) < 2**53
        assert float(step.shift.min()) >= 10  # and the weights keep their precision


def test_the_integer_network_is_close_to_the_float_one():
    layers = nn.Sequential(deconv(8, 8), nn.ReLU(), deconv(8, 8), nn.LeakyReLU())
    z = torch.round(torch.randn(1, 8, 4, 4) * 3) + 0.25
    found = portable.IntegerNetwork(layers)(z)
    assert found.dtype == torch.float32
    assert (found - layers(z)).abs().max() < 2e-3


def test_the_integer_output_is_the_same_whatever_the_threads_and_onednn():
    model = calibrated_zoo_model("mbt2018-mean", photo_crops(1, 128)[0])
    z_hat = torch.round(torch.randn(1, 8, 4, 6) * 4)
    with torch.no_grad(), portable.portable_mode():
        with threads(2):
            reference = model.h_s(z_hat)
        with threads(1):
            assert torch.equal(model.h_s(z_hat), reference)
        with torch.backends.mkldnn.flags(enabled=False):
            assert torch.equal(model.h_s(z_hat), reference)
        # Another order of the sums: the input channels reversed.
        network = model.h_s.integer_network()
        first = network.steps[0]
        network.steps[0] = dataclasses.replace(first, weight=first.weight.flip(0))
        assert torch.equal(network(z_hat.flip(1)), reference)
    with torch.no_grad():
        assert not torch.equal(model.h_s(z_hat), reference)  # float outside


def test_hyper_synthesis_keeps_names_and_trains_in_float():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    assert isinstance(model.h_s, portable.HyperSynthesis)
    base = tiny_zoo_model("bmshj2018-hyperprior")
    assert model.state_dict().keys() == base.state_dict().keys()
    model.train()
    z = torch.randn(1, 8, 2, 2, requires_grad=True)
    with portable.portable_mode():
        model.h_s(z).sum().backward()
    assert z.grad is not None  # the float layers, differentiable
    # The cache follows the weights.
    first = model.h_s.integer_network()
    with torch.no_grad():
        model.h_s[0].weight.mul_(2)
    assert model.h_s.integer_network() is not first


def test_autoregressive_models_refuse_portable():
    for name in ZOO_ARCHITECTURES:
        model = tiny_zoo_model(name)
        assert model.supports_portable == (name in PORTABLE)
    with pytest.raises(ValueError, match="mbt2018 cannot code portable bitstreams"):
        tiny_zoo_model("mbt2018").compress(torch.rand(1, 3, 64, 64), portable=True)


@pytest.mark.parametrize("name", PORTABLE)
def test_portable_decodes_match_on_other_threads_and_without_onednn(name):
    x = photo_crops(1)[0]
    model = calibrated_zoo_model(name, x)
    out = encode(model, x, portable=True)
    assert out["portable"] and out["symbols_digest"] is not None
    with torch.no_grad(), threads(2):
        reference = to_8bit(decode(model, out)["x_hat"])
    contexts = [threads(1), torch.backends.mkldnn.flags(enabled=False)]
    # No DesyncError allowed: the entropy parameters are the same everywhere.
    assert caught_or_close(model, out, reference, [(name, c) for c in contexts]) == 0


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_a_changed_weight_in_portable_mode_is_caught_or_harmless(name):
    x = photo_crops(1, 128)[0]
    model = calibrated_zoo_model(name, x)
    out = encode(model, x, portable=True)
    with torch.no_grad():
        reference = to_8bit(decode(model, out)["x_hat"])
    layers = [m for m in model.h_s if isinstance(m, nn.modules.conv._ConvNd)]
    contexts = [(f"last bit of {layer}", last_bit_flipped(layer)) for layer in layers]
    contexts += [(f"{layer} × 1.5", _scaled(layer, 1.5)) for layer in layers]
    caught_or_close(model, out, reference, contexts)


@contextlib.contextmanager
def _scaled(layer, factor):
    with torch.no_grad():
        layer.weight.mul_(factor)
    try:
        yield
    finally:
        with torch.no_grad():
            layer.weight.div_(factor)


def test_unshield_gives_compressai_classes_back():
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    from compressai_psic.models import unshield

    base = unshield(tiny_zoo_model("mbt2018-mean"))
    assert type(base.h_s) is nn.Sequential
    assert type(base.entropy_bottleneck) is EntropyBottleneck
    assert type(base.gaussian_conditional) is GaussianConditional
    shielded = tiny_zoo_model("mbt2018-mean")
    assert base.state_dict().keys() <= shielded.state_dict().keys()
