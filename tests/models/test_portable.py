"""Portable bitstreams (models/portable.py): the integer hyper-synthesis is
exact, so its output does not depend on threads, oneDNN or summation order."""

from __future__ import annotations

import contextlib
import dataclasses
import math

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


def _conv1x1(weight, bias=None):
    layer = nn.Conv2d(1, 1, 1, bias=bias is not None)
    with torch.no_grad():
        layer.weight.fill_(weight)
        if bias is not None:
            layer.bias.fill_(bias)
    return layer


def _units(values):
    """A ``(1, 1, 1, n)`` activation of integers in units of 2**-FRACTION_BITS."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


def test_weight_exponents_follow_the_largest_weight_and_the_fan_in():
    budget = 51 - portable.ACTIVATION_BITS  # bits left under 2**51 for weights
    layer = nn.Conv2d(2, 4, 3, bias=False)  # fan-in 18: 5 bits
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 1, 2, 0] = 0.75  # |w| < 2**0
        layer.weight[1, 0, 0, 0] = -3.0  # |w| < 2**2
        layer.weight[3, 0, 1, 1] = 1e-20  # tiny: capped at 2**40
    step = portable.IntegerConv.from_module(layer)
    assert step.shift.tolist() == [budget - 5, budget - 5 - 2, 0, 40]
    assert step.shift.dtype == torch.float64
    assert step.weight[0, 1, 2, 0] == 0.75 * 2 ** (budget - 5)
    assert step.weight[1, 0, 0, 0] == -3.0 * 2 ** (budget - 7)
    assert torch.equal(step.bias, torch.zeros(4, dtype=torch.float64))
    # A transposed convolution: its output channels are the weight's dim 1.
    layer = nn.ConvTranspose2d(4, 2, 3, bias=False)  # fan-in 36: 6 bits
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[3, 0, 2, 2] = 0.5  # |w| < 2**0
        layer.weight[0, 1, 0, 0] = 2.0  # |w| < 2**2
    step = portable.IntegerConv.from_module(layer)
    assert step.shift.tolist() == [budget - 6, budget - 6 - 2]
    assert step.weight[3, 0, 2, 2] == 0.5 * 2 ** (budget - 6)


def test_a_fan_in_of_one_keeps_the_whole_budget():
    step = portable.IntegerConv.from_module(_conv1x1(0.5))
    assert step.shift.tolist() == [51 - portable.ACTIVATION_BITS]


def test_biases_are_in_accumulator_units_and_bounded():
    step = portable.IntegerConv.from_module(_conv1x1(0.5, bias=0.25))
    shift = 51 - portable.ACTIVATION_BITS
    assert step.bias.tolist() == [0.25 * 2 ** (shift + portable.FRACTION_BITS)]
    assert step(_units([0, 8])).flatten().tolist() == [1024, 1028]
    for bias in (1e12, -1e12):
        step = portable.IntegerConv.from_module(_conv1x1(0.5, bias=bias))
        assert step.bias.tolist() == [math.copysign(2.0**51, bias)]


def test_layer_outputs_are_rounded_half_up():
    step = portable.IntegerConv.from_module(_conv1x1(0.5))
    found = step(_units([-5, -3, -1, 1, 3, 5, 4]))
    assert found.flatten().tolist() == [-2, -1, 0, 1, 2, 3, 2]


def test_activations_saturate_on_both_sides():
    limit = 2**portable.ACTIVATION_BITS - 1
    network = portable.IntegerNetwork(nn.Sequential())
    x = torch.tensor([1e6, -1e6, 0.3, -0.3], dtype=torch.float64)
    units = [limit, -limit, round(0.3 * 4096), -round(0.3 * 4096)]
    assert (network(x) * 4096).tolist() == units
    # A layer's output saturates as its input does.
    step = portable.IntegerConv.from_module(_conv1x1(4.0))
    found = step(_units([limit // 2, -(limit // 2), 3]))
    assert found.flatten().tolist() == [limit, -limit, 12]


def test_relu_and_leaky_relu_are_exact_fixed_point():
    x = torch.tensor([-1000.0, -1.0, 0.0, 1000.0]) / 4096
    relu = portable.IntegerNetwork(nn.Sequential(nn.ReLU()))
    assert (relu(x) * 4096).tolist() == [0, 0, 0, 1000]
    # slope 0.01 in 16-bit fixed point is 655 / 2**16, then rounded down
    leaky = portable.IntegerNetwork(nn.Sequential(nn.LeakyReLU(0.01)))
    assert (leaky(x) * 4096).tolist() == [-10, -1, 0, 1000]
    # The output keeps the input's dtype.
    assert leaky(x.double()).dtype == torch.float64


def test_an_integer_network_refuses_other_layers():
    with pytest.raises(ValueError, match="Sigmoid"):
        portable.IntegerNetwork(nn.Sequential(conv(3, 3), nn.Sigmoid()))


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(4, 4, 3, groups=2),
        nn.ConvTranspose2d(4, 4, 3, groups=2),
        nn.Conv2d(4, 4, 3, dilation=2),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 4, 3, padding="same"),
        nn.Sigmoid(),
    ],
    ids=["groups", "transposed-groups", "dilation", "reflect", "same", "sigmoid"],
)
def test_hyper_syntheses_with_other_layers_are_not_portable(layer):
    model = nn.Module()
    model.h_s = nn.Sequential(nn.ReLU(), layer)
    assert not portable.supports_portable(model)
    assert not portable.install_hyper_synthesis(model)
    assert type(model.h_s) is nn.Sequential


def test_which_models_support_portable_coding():
    model = nn.Module()
    assert portable.supports_portable(model)  # no hyper-synthesis at all
    model.h_s = nn.Sequential(conv(4, 4), nn.ReLU(), deconv(4, 4), nn.LeakyReLU())
    model.h_s.append(nn.ConvTranspose2d(4, 4, 3, padding=1, output_padding=0))
    assert portable.supports_portable(model)
    model.context_prediction = nn.Identity()
    assert not portable.supports_portable(model)
    other = nn.Module()
    other.h_s = conv(4, 4)  # not a Sequential
    assert not portable.supports_portable(other)


def test_install_and_remove_keep_the_layers_and_the_training_mode():
    for training in (True, False):
        model = nn.Module()
        layers = [deconv(4, 4), nn.ReLU()]
        model.h_s = nn.Sequential(*layers).train(training)
        assert portable.install_hyper_synthesis(model)
        assert type(model.h_s) is portable.HyperSynthesis
        assert model.h_s.training is training and list(model.h_s) == layers
        wrapped = model.h_s
        assert portable.install_hyper_synthesis(model) and model.h_s is wrapped
        portable.remove_hyper_synthesis(model)
        assert type(model.h_s) is nn.Sequential
        assert model.h_s.training is training and list(model.h_s) == layers
        plain = model.h_s
        portable.remove_hyper_synthesis(model)
        assert model.h_s is plain
    empty = nn.Module()
    assert portable.install_hyper_synthesis(empty) and not hasattr(empty, "h_s")


def test_hyper_synthesis_runs_the_integer_network_when_asked():
    torch.manual_seed(0)
    h_s = portable.HyperSynthesis(deconv(4, 4), nn.ReLU(), deconv(4, 4))
    z = torch.round(torch.randn(1, 4, 3, 3) * 3) + 0.3
    integer = h_s.integer_network()
    assert h_s.integer_network() is integer  # cached while the weights stay
    with torch.no_grad():
        floating = h_s(z)
        with portable.portable_mode():
            assert torch.equal(h_s(z), integer(z))
            with portable.portable_mode(False):
                assert torch.equal(h_s(z), floating)
            assert torch.equal(h_s(z), integer(z))  # restored on exit
        assert torch.equal(h_s(z), floating)
    assert not torch.equal(integer(z), floating)
    # Evaluation with gradients enabled, or training without them: integer.
    h_s.eval()
    with portable.portable_mode():
        assert torch.equal(h_s(z), integer(z))
    h_s.train()
    with portable.portable_mode(), torch.no_grad():
        assert torch.equal(h_s(z), integer(z))
