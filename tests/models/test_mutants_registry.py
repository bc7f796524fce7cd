"""Tests written for mutants of ``compressai_psic.models.registry``,
``registration``, ``checkpoints`` and ``guard`` that the other tests let survive
(mutation testing with mutmut, see BENCHMARKS.md): each asserts a behaviour the
mutated code would break.

Survivors left, equivalent (mutmut 3.8.1 names, ``compressai_psic.models.`` left
out):

- ``registry.x_infer_channels__mutmut_24`` (``len(module) > 0`` → ``>= 0``): an
  empty ``nn.Sequential`` has no child to look at, ``None`` either way.
- ``registry.x_architectures_matching__mutmut_18`` / ``_19``
  (``state_dict(keep_vars=True)`` → ``None`` / ``False``): detached tensors have
  the shapes of the parameters; only shapes are read.
- ``guard.x_pad_strings__mutmut_24`` / ``_26`` (``len(string) >= needed`` →
  ``... and False`` / ``>``): ``bytes.ljust`` of a string at least ``needed``
  long returns it unchanged.
- ``guard.x__check_string__mutmut_20`` (``string[0:4]`` → ``string[0:5]``): on a
  little-endian machine byte 4 lands on bit 32, which the high word sets anyway.
- ``guard.x__shape__mutmut_3`` (``dims = None`` → ``""`` for a shape that is not
  iterable): an empty string has length 0, never the layout's number of
  dimensions, so the same error is raised.
- ``guard.x__data_length__mutmut_14`` (the block scan stopping at ``end > 1``):
  it leaves only the first byte unscanned, which changes the answer only for
  strings whose data is at most one byte, and ``MIN_STRING_LENGTH`` (8) hides
  that.
- ``guard.x__longest_ones_run__mutmut_21`` (``astype(np.int8)`` →
  ``astype(None)``, i.e. float64): the differences of 0/1 values are -1, 0 or 1
  in either type, so the same edges are found.

Killed only on a CUDA device (by
``test_latent_layout_probes_on_the_device_of_the_weights``; on a CPU-only machine
every tensor is on the CPU whatever the probe picks):
``guard.x__probe__mutmut_15`` (no weight looked at), ``_21`` (buffers only),
``_22`` (parameters only), ``_23`` / ``_24`` / ``_33`` / ``_37`` (the probe image
always on the CPU). All seven were killed on an H200 (BENCHMARKS.md).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from compressai.layers import subpel_conv3x3
from compressai.models import FactorizedPrior
from compressai.registry import MODELS

import compressai_psic as psic
from compressai_psic.models import InjectionPoint, ShieldedMixin
from compressai_psic.models.registration import _base_of
from compressai_psic.models.registry import (
    ARCHITECTURES,
    Architecture,
    architectures_matching,
    auto_injection_points,
    infer_channels,
)

from .helpers import register_toy


def _factorized_state():
    torch.manual_seed(0)
    return FactorizedPrior(N=8, M=12).state_dict()


# ------------------------------------------------------------------ registration
def test_base_of_looks_at_the_class_right_after_the_shielded_one():
    # The first CompressAI class of the MRO after the class itself, wherever the
    # mixin is: here the base comes first, right after the class.
    base_first = type("BaseFirst", (FactorizedPrior, ShieldedMixin), {})
    assert base_first.__mro__[1] is FactorizedPrior
    assert _base_of(base_first) is FactorizedPrior


def test_decorator_registers_and_returns_the_decorated_class_itself(registries):
    class ShieldedToy(ShieldedMixin, FactorizedPrior):
        def marker(self):
            return "mine"

    decorated = psic.models.register_architecture("toy-own", plans={"a": ["g_s.0"]})(
        ShieldedToy
    )
    assert decorated is ShieldedToy
    assert MODELS["psic-toy-own"] is ShieldedToy
    assert ARCHITECTURES["toy-own"].shielded_class is ShieldedToy
    assert decorated(N=8, M=12).marker() == "mine"


def test_registration_defaults_and_trigger_argument(registries):
    register_toy("toy-plain", FactorizedPrior, {"default": ["g_s.0"]})
    plain = ARCHITECTURES["toy-plain"]
    assert plain.description == ""
    assert plain.trigger_argument is False and plain.anchor_full is True

    @psic.models.register_architecture(
        "toy-trigger",
        plans={"a": ["g_s.0"]},
        layout=psic.models.CheckpointLayout(trigger_argument=True),
    )
    class ShieldedTriggerToy(ShieldedMixin, FactorizedPrior):
        pass

    assert ARCHITECTURES["toy-trigger"].trigger_argument is True
    assert ShieldedTriggerToy._psic_architecture.trigger_argument is True


# ---------------------------------------------------------------------- registry
def test_plan_of_skips_a_plan_that_cannot_be_computed_for_the_model():
    class NoSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.g_s = nn.Conv2d(3, 3, 1)  # auto_injection_points refuses it

    arch = Architecture(
        name="mixed",
        model_class=FactorizedPrior,
        plans={"auto": auto_injection_points, "fixed": ["g_s"]},
    )
    model = NoSequential()
    with pytest.raises(ValueError):
        arch.points_for(model, "auto")
    assert arch.plan_of(model, ["g_s"]) == "fixed"
    assert arch.plan_of(model, ["g_s.0"]) == "custom"


def test_infer_channels_of_a_one_layer_sequential():
    assert infer_channels(nn.Sequential(nn.Conv2d(3, 8, 1))) == 8
    assert infer_channels(nn.Sequential(nn.Linear(2, 6))) == 6


def test_infer_channels_after_pixel_shuffle_is_an_integer():
    channels = infer_channels(subpel_conv3x3(4, 5, 2))
    assert channels == 5 and type(channels) is int
    # Channels are counted in whole numbers (6 // 4), never 1.5.
    odd = nn.Sequential(nn.Conv2d(3, 6, 1), nn.PixelShuffle(2))
    assert infer_channels(odd) == 1 and type(infer_channels(odd)) is int
    # What it is for: a projection layer of that many channels.
    model = nn.Module()
    model.g_s = nn.Sequential(subpel_conv3x3(4, 5, 2), nn.ReLU())
    point = auto_injection_points(model)[0]
    assert point == InjectionPoint("g_s.0", 5) and type(point.channels) is int


def test_architectures_matching_goes_on_after_a_model_it_cannot_build(registries):
    state = _factorized_state()
    assert "bmshj2018-factorized" in dict(architectures_matching(state))

    # The newest registration reads a config its model class cannot be built
    # from (its constructor raises): the older architectures are still asked.
    register_toy(
        "toy-unbuildable",
        FactorizedPrior,
        {"default": ["g_s.0"]},
        config_from_state_dict=lambda sd: {"N": 8, "Q": 1},
    )
    assert list(ARCHITECTURES)[-1] == "toy-unbuildable"
    matches = dict(architectures_matching(state))
    assert "toy-unbuildable" not in matches
    assert matches["bmshj2018-factorized"] == {"N": 8, "M": 12}
    assert psic.guess_architecture(state) == "bmshj2018-factorized"


def test_guess_architecture_chains_the_error_of_a_constructor(registries):
    register_toy(
        "toy-unbuildable",
        FactorizedPrior,
        {"default": ["g_s.0"]},
        config_from_state_dict=lambda sd: {"N": 8, "Q": 1},
    )
    with pytest.raises(ValueError) as info:
        psic.guess_architecture({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})
    message = str(info.value)
    assert message.startswith("No registered architecture has these weights")
    assert "toy-unbuildable could not be built with {'N': 8, 'Q': 1}" in message
    assert "TypeError" in message and "argument: 'M'" in message
    assert isinstance(info.value.__cause__, TypeError)


# ------------------------------------------------------------------- checkpoints
def test_guess_architecture_error_message():
    with pytest.raises(ValueError) as info:
        psic.guess_architecture({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})
    assert str(info.value) == (
        "No registered architecture has these weights; pass architecture=, one "
        f"of {sorted(ARCHITECTURES)}, or register yours with "
        "compressai_psic.register_architecture"
    )


def test_load_checkpoint_reads_the_file_with_map_location(tmp_path):
    path = tmp_path / "base.pth.tar"
    torch.save(_factorized_state(), path)
    locations = []

    def map_location(storage, location):
        locations.append(location)
        return storage

    net = psic.load_checkpoint(path, map_location=map_location)
    assert locations and set(locations) == {"cpu"}
    assert isinstance(net, ShieldedMixin)


def test_load_checkpoint_passes_its_keywords_on_for_a_shielded_file(tmp_path):
    from compressai_psic.models.conditions import FourierConditionEncoder

    torch.manual_seed(0)
    net = psic.shield(FactorizedPrior(N=8, M=12), trigger_dim=16, num_frequencies=3)
    path = tmp_path / "shielded.pth.tar"
    torch.save({"state_dict": net.state_dict()}, path)
    encoder = FourierConditionEncoder(16, 3)
    loaded = psic.load_checkpoint(path, condition_encoder=encoder)
    assert loaded.global_cond is encoder
    for name, value in net.global_cond.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value)


# ------------------------------------------------------------------------- guard
class _StubCodec(nn.Module):
    """A codec with no weights and no ``downsampling_factor``: ``shape`` is the
    image size over 64, one latent of 4 channels at that size."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def compress(self, x):
        self.sizes.append(tuple(x.shape))
        h, w = (n // 64 for n in x.shape[2:])
        return {"strings": [[b"\0" * 8]], "shape": (h, w)}

    def forward(self, x):
        h, w = (n // 64 for n in x.shape[2:])
        return {"likelihoods": {"y": torch.ones(1, 4, h, w)}}


def test_latent_layout_of_a_model_without_weights_or_downsampling_factor():
    from fractions import Fraction

    from compressai_psic.models.guard import latent_layout

    stub = _StubCodec()
    layout = latent_layout(stub)
    assert stub.sizes == [(1, 3, 64, 128)]  # 64 by default, twice as wide
    assert layout.padding_multiple == 64
    assert layout.image_per_unit == (Fraction(64), Fraction(64))
    assert layout.latents == ((4, (Fraction(1), Fraction(1))),)
    assert layout.shape_for_image((100, 130)) == (2, 3)


def test_shape_for_image_refuses_a_size_of_another_length():
    from compressai_psic.errors import BitstreamError
    from compressai_psic.models.guard import latent_layout

    layout = latent_layout(_StubCodec())
    with pytest.raises(BitstreamError) as info:
        layout.shape_for_image((64,))
    assert str(info.value) == (
        "image size (64,) has 1 dimensions, the model's latent shape 2"
    )


class _StubOnDevice(_StubCodec):
    """The stub with one weight (a parameter or a buffer): it encodes images on
    the weight's device only."""

    def __init__(self, weight: torch.Tensor, parameter: bool):
        super().__init__()
        if parameter:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def compress(self, x):
        assert x.device == self.weight.device, (x.device, self.weight.device)
        return super().compress(x)


def test_latent_layout_probes_on_the_device_of_the_weights():
    from compressai_psic.models.guard import latent_layout

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for parameter in (True, False):
            stub = _StubOnDevice(torch.zeros(1, device=device), parameter)
            assert latent_layout(stub).padding_multiple == 64
            assert stub.sizes == [(1, 3, 64, 128)]


class _Mismatched(_StubCodec):
    def __init__(self, likelihoods=1, shape=None):
        super().__init__()
        self.count, self.shape = likelihoods, shape

    def compress(self, x):
        out = super().compress(x)
        if self.shape is not None:
            out["shape"] = self.shape
        return out

    def forward(self, x):
        y = super().forward(x)["likelihoods"]["y"]
        return {"likelihoods": {str(i): y for i in range(self.count)}}


def test_latent_layout_refuses_models_it_cannot_read():
    from compressai_psic.models.guard import latent_layout

    with pytest.raises(ValueError) as info:
        latent_layout(_Mismatched(likelihoods=2))
    assert str(info.value) == (
        "_Mismatched: compress() returns 1 string lists but forward() 2 "
        "likelihoods; cannot check its bitstreams"
    )
    with pytest.raises(ValueError) as info:
        latent_layout(_Mismatched(shape=()))
    assert str(info.value) == (
        "_Mismatched: compress() returns 1 string lists but forward() 1 "
        "likelihoods; cannot check its bitstreams"
    )
    with pytest.raises(ValueError) as info:
        latent_layout(_Mismatched(shape=(1,)))
    assert str(info.value) == (
        "_Mismatched: latent size (1, 2) and shape (1,) differ in length"
    )


def test_data_length_rounds_up_to_whole_words():
    from compressai_psic.models.guard import _data_length

    assert _data_length(b"\1" * 9) == 12
    assert _data_length(b"\1" * 9 + b"\0" * 7) == 12
    assert _data_length(b"\1" * 13) == 16
    assert _data_length(b"\1" * 16) == 16
    assert _data_length(b"\1") == 8


def test_check_finite_counts_over_the_whole_batch():
    from compressai_psic.errors import BitstreamError
    from compressai_psic.models.guard import check_finite

    x_hat = torch.zeros(2, 3, 4, 4)
    x_hat[0, 0, 0, 0] = float("nan")
    x_hat[1, 0, 0, 0] = float("inf")
    with pytest.raises(BitstreamError) as info:
        check_finite(x_hat)
    assert str(info.value).endswith("the decoded image has 2 non-finite values")


def test_guard_decode_inputs_checks_the_image_size():
    from compressai_psic.errors import BitstreamError
    from compressai_psic.models.guard import guard_decode_inputs

    torch.manual_seed(0)
    net = FactorizedPrior(N=8, M=12).eval()
    net.update(force=True)
    with torch.no_grad():
        out = net.compress(torch.rand(1, 3, 64, 64))
    strings, shape = out["strings"], tuple(out["shape"])
    padded = guard_decode_inputs(net, strings, shape, image_size=(64, 64))
    assert len(padded[0][0]) >= len(strings[0][0])
    with pytest.raises(BitstreamError):
        guard_decode_inputs(net, strings, shape, image_size=(128, 128))


def _word_string(state: int, length: int) -> bytes:
    import sys

    return state.to_bytes(8, sys.byteorder) + b"\1" * (length - 8)


def test_check_string_bounds():
    from compressai_psic.errors import BitstreamError
    from compressai_psic.models.guard import _check_string, max_string_length

    limit = max_string_length(1)
    # The longest string the encoder writes, and the state interval's ends.
    _check_string(_word_string(1 << 31, limit), 1, "s")
    _check_string(_word_string(1 << 62, 8), 1, "s")
    _check_string(_word_string((1 << 63) - 1, 8), 1, "s")
    for state in ((1 << 31) - 1, 1 << 63):
        with pytest.raises(BitstreamError, match="state the encoder never writes"):
            _check_string(_word_string(state, 8), 1, "s")
    with pytest.raises(BitstreamError, match="more than the encoder writes"):
        _check_string(_word_string(1 << 31, limit + 4), 1, "s")


def test_validate_decode_inputs_names_the_wrong_types():
    from compressai_psic.errors import BitstreamError
    from compressai_psic.models.guard import validate_decode_inputs

    torch.manual_seed(0)
    net = FactorizedPrior(N=8, M=12).eval()
    net.update(force=True)
    with pytest.raises(BitstreamError) as info:
        validate_decode_inputs(net, "abc", (4, 4))
    assert str(info.value).endswith("strings must be a list of string lists, got str")
    with pytest.raises(BitstreamError) as info:
        validate_decode_inputs(net, [["abcdefgh"]], (4, 4))
    assert str(info.value).endswith("strings must be bytes, got str")


def _words(*values: int) -> bytes:
    import numpy as np

    return np.array(values, dtype=np.uint32).tobytes()


def test_longest_ones_run_counts_whole_words():
    from compressai_psic.models.guard import _longest_ones_run

    ones = 0xFFFFFFFF
    assert _longest_ones_run(b"") == 0
    assert _longest_ones_run(_words(0, 1, 2)) == 0
    # All-ones bytes that straddle two words are no all-ones word.
    assert _longest_ones_run(b"\0\xff\xff\xff\xff\0\0\0") == 0
    # A trailing partial word is ignored.
    assert _longest_ones_run(_words(ones) + b"\xff\xff") == 1
    # Runs of 1, 3 and 2, the longest in the middle, none at either end.
    data = _words(0, ones, 0, ones, ones, ones, 7, ones, ones, 0)
    assert _longest_ones_run(data) == 3
    # Runs at both ends, the longest at the end.
    assert _longest_ones_run(_words(ones, 0, ones, ones)) == 2
    assert _longest_ones_run(_words(ones, ones, ones, 0, ones)) == 3


def test_padding_bytes_is_the_documented_bound():
    from compressai_psic.models.guard import padding_bytes

    # 76 S + 132 + 64 r bytes, r the longest run of all-ones words.
    assert padding_bytes(3, _words(0, 0)) == 76 * 3 + 132
    assert padding_bytes(3, _words(0xFFFFFFFF, 0xFFFFFFFF, 0)) == 76 * 3 + 132 + 128


def test_a_bad_string_of_a_single_image_names_no_batch_element():
    from compressai_psic.errors import BitstreamError
    from compressai_psic.models.guard import validate_decode_inputs

    torch.manual_seed(0)
    net = FactorizedPrior(N=8, M=12).eval()
    net.update(force=True)
    with pytest.raises(BitstreamError) as info:
        validate_decode_inputs(net, [[b""]], (4, 4))
    assert str(info.value) == (
        "corrupted bitstream: string 0 has 0 bytes; an entropy-coded string has "
        "at least 8"
    )


def test_check_compress_input_messages_and_bounds():
    from compressai_psic.models.guard import check_compress_input

    with pytest.raises(ValueError) as info:
        check_compress_input(torch.tensor([0.5, float("nan")]))
    assert str(info.value) == (
        "the image has 1 NaN or infinite values; the codec needs finite pixels "
        "in [0, 1]"
    )
    with pytest.raises(ValueError) as info:
        check_compress_input(torch.tensor([-0.5, 0.5]))
    assert str(info.value) == "pixel values must be in [0.0, 1.0], got [-0.5, 0.5]"
    with pytest.raises(ValueError, match="got"):
        check_compress_input(torch.tensor([0.5, 1.5]))
    check_compress_input(torch.tensor([-0.5, 1.5]), low=None, high=None)
    check_compress_input(torch.tensor([0.0, 1.0]))
