"""Tests of compressai_psic.models.guard: model-aware validation of bitstreams,
and the padding that keeps CompressAI's rANS decoder inside its buffer (checked
against the reference decoder of ``tests/rans_reference.py``). The reproducers
of issue 12 decode in forked children: ``tests/io/test_fuzzing.py``."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn
from compressai.ans import RansDecoder, RansEncoder
from compressai.models import FactorizedPrior, JointAutoregressiveHierarchicalPriors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressai_psic import options, zoo
from compressai_psic.errors import BitstreamError, PixelLimitError, PSICFormatError
from compressai_psic.models import guard as decode_guard
from compressai_psic.models import rans, symbols
from compressai_psic.utils import pad_to_multiple

from ..rans_reference import (
    OutOfBounds,
    entropy_model_tables,
    random_case,
    reference_decode,
    streams,
    valid_start,
)
from .helpers import (
    tiny_zoo_model,
)

ARCHITECTURES = list(zoo.image_models)

needs_extension = pytest.mark.skipif(
    not rans.available(), reason="the C extension was not built"
)


@pytest.fixture(scope="module")
def models():
    return {name: tiny_zoo_model(name) for name in ARCHITECTURES}


def encode(model, height=40, width=72, seed=0):
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    padded, _ = pad_to_multiple(x, model.downsampling_factor)
    with torch.no_grad():
        return model.compress(padded)


# ------------------------------------------------------------------- layout


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_layout_and_guarded_decode_of_every_architecture(models, name):
    model = models[name]
    layout = decode_guard.latent_layout(model)
    factor = 16 if name == "bmshj2018-factorized" else 64
    assert layout.num_strings == (1 if name == "bmshj2018-factorized" else 2)
    assert layout.image_per_unit == (factor, factor)
    out = encode(model)
    shape = tuple(out["shape"])
    assert decode_guard.expected_shape(model, 40, 72) == shape
    assert layout.image_size(shape) == (
        -(-40 // factor) * factor,
        -(-72 // factor) * factor,
    )
    # The symbol counts are those the encoder coded: y (and z) elements.
    with torch.no_grad():
        likelihoods = model(torch.zeros(1, 3, *layout.image_size(shape)))["likelihoods"]
    assert layout.symbols(shape) == [t[0].numel() for t in likelihoods.values()]
    strings = decode_guard.guard_decode_inputs(
        model, out["strings"], shape, image_size=(40, 72)
    )
    with torch.no_grad():
        guarded = model.decompress(strings, shape)["x_hat"]
        plain = model.decompress(out["strings"], shape)["x_hat"]
    assert torch.equal(guarded, plain)
    decode_guard.check_finite(guarded)


def test_layout_is_cached(models):
    model = models["bmshj2018-hyperprior"]
    assert decode_guard.latent_layout(model) is decode_guard.latent_layout(model)


# ---------------------------------------------------------------- validation


@pytest.fixture(scope="module")
def coded(models):
    model = models["mbt2018-mean"]
    return model, encode(model)


def check(model, strings, shape, **kwargs):
    decode_guard.validate_decode_inputs(model, strings, shape, **kwargs)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s[:1], "1 string lists, the model entropy-codes 2"),
        (lambda s: s + [s[0]], "3 string lists"),
        (lambda s: [s[0], s[1] * 2], "different batch sizes"),
        (lambda s: [s[0], []], "non-empty list"),
        (lambda s: [s[0], ["text"]], "must be bytes"),
        (lambda s: "nope", "must be a list"),
        (lambda s: [s[0], [b""]], "0 bytes"),
        (lambda s: [s[0], [b"\x00\x00\x00\x80" * 3]], "start"),
        (lambda s: [s[0], [s[1][0] + b"\x00"]], "32-bit words"),
        (lambda s: [s[0], [s[1][0] + b"\x01" * 4000]], "more than the encoder"),
    ],
)
def test_strings_that_the_encoder_cannot_write_are_refused(coded, edit, message):
    model, out = coded
    strings = [list(latent) for latent in out["strings"]]
    with pytest.raises(BitstreamError, match=message):
        check(model, edit(strings), out["shape"])


@pytest.mark.parametrize("length", [n for n in range(13) if n not in (8, 12)])
def test_strings_of_0_to_12_bytes_are_refused(coded, length):
    # Issue 12: these reached the native decoder and segfaulted. 8 and 12 bytes
    # are whole words: refused for a bad start state, else padded (below).
    model, out = coded
    with pytest.raises(BitstreamError, match="corrupted bitstream"):
        check(model, [[bytes(range(length))], out["strings"][1]], out["shape"])


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1,), "expected 2 positive"),
        ((1, 2, 3), "expected 2 positive"),
        ((0, 2), "expected 2 positive"),
        ((1.5, 2), "expected 2 positive"),
        (None, "expected 2 positive"),
    ],
)
def test_malformed_shapes_are_refused(coded, shape, message):
    model, out = coded
    with pytest.raises(BitstreamError, match=message):
        check(model, out["strings"], shape)


def test_shape_must_be_the_declared_image_s(coded):
    model, out = coded
    shape = tuple(out["shape"])
    check(model, out["strings"], shape, image_size=(40, 72))
    check(model, out["strings"], shape, image_size=(1, 65))
    with pytest.raises(BitstreamError, match="does not fit a 1x1 image"):
        # Issue 12: a 19 KB file declaring 1x1 decoded 4096² (5.2 GB, 18.5 s).
        check(model, out["strings"], (64, 64), image_size=(1, 1))
    with pytest.raises(BitstreamError, match="expected"):
        check(model, out["strings"], (shape[1], shape[0]), image_size=(40, 72))


def test_pixel_limit_default_override_and_off(coded):
    model, out = coded
    # Issue 12: decompress(strings, (200, 300)) was OOM-killed.
    with pytest.raises(PixelLimitError, match="12800x19200|19200x12800"):
        check(model, out["strings"], (200, 300))
    with pytest.raises(PixelLimitError, match="limit of 1000"):
        check(model, out["strings"], out["shape"], max_pixels=1000)
    # The limit is an argument of each call, never a process-wide setting.
    assert decode_guard.MAX_DECODE_PIXELS == options.MAX_DECODE_PIXELS == 4096**2
    with pytest.raises(PixelLimitError, match=r"limit of 1000 \(max_pixels"):
        model.decompress(out["strings"], out["shape"], max_pixels=1000)
    with pytest.raises(PixelLimitError, match="limit of 1000"):
        model.decompress_multi(out["strings"], out["shape"], max_pixels=1000)
    check(model, out["strings"], out["shape"], max_pixels=None)
    with pytest.raises(PixelLimitError, match=r"65536x65536 .*\(a 65535x65535 image"):
        check(model, out["strings"], out["shape"], image_size=(65535, 65535))
    assert issubclass(PixelLimitError, PSICFormatError)
    assert issubclass(BitstreamError, ValueError)


def test_pixel_limit_is_inclusive_and_names_the_image(coded):
    model, out = coded
    layout = decode_guard.latent_layout(model)
    height, width = layout.image_size(out["shape"])
    pixels = height * width
    # A decode of exactly max_pixels is allowed; one pixel less refuses it.
    check(model, out["strings"], out["shape"], max_pixels=pixels)
    with pytest.raises(PixelLimitError) as info:
        check(model, out["strings"], out["shape"], max_pixels=pixels - 1)
    # One image: no "1 ×" count and nothing about a declared size.
    assert str(info.value) == (
        f"refused: decoding would produce {width}x{height} = "
        f"{pixels} pixels, over the limit of {pixels - 1} (max_pixels; None for no "
        "limit)"
    )


def test_batches(models):
    model = models["bmshj2018-hyperprior"]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.compress(x)
    strings = decode_guard.guard_decode_inputs(model, out["strings"], out["shape"])
    with torch.no_grad():
        assert torch.equal(
            model.decompress(strings, out["shape"])["x_hat"],
            model.decompress(out["strings"], out["shape"])["x_hat"],
        )
    with pytest.raises(BitstreamError, match="batch element 1"):
        check(model, [[s, b""] for s, _ in out["strings"]], out["shape"])
    with pytest.raises(PixelLimitError, match="2 × 64x64"):
        check(model, out["strings"], out["shape"], max_pixels=64 * 64)


def test_padding_is_done_once():
    # A CompressAI model decodes with CompressAI's own decoder: it is padded.
    model = FactorizedPrior(8, 8)
    model.update(force=True)
    out = encode(model)
    once = decode_guard.pad_strings(model, out["strings"], out["shape"])
    twice = decode_guard.guard_decode_inputs(model, once, out["shape"])
    assert all(a is b for la, lb in zip(once, twice) for a, b in zip(la, lb))
    y, original = once[0][0], out["strings"][0][0]
    assert y[: len(original)] == original and not any(y[len(original) :])
    symbols = decode_guard.latent_layout(model).symbols(out["shape"])[0]
    assert len(y) >= len(original) + 76 * symbols + 132


@needs_extension
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_shielded_model_s_strings_are_decoded_in_bounds(models, name):
    model = models[name]
    lists = 1 if name == "bmshj2018-factorized" else 2
    assert decode_guard.read_in_bounds(model) == (True,) * lists
    out = encode(model)
    padded = decode_guard.pad_strings(model, out["strings"], out["shape"])
    assert padded == out["strings"]
    assert all(type(string) is bytes for latent in padded for string in latent)


def test_models_that_decode_with_compressai_s_decoder_are_padded(monkeypatch, models):
    plain = FactorizedPrior(8, 8)
    plain.update(force=True)
    assert decode_guard.read_in_bounds(plain) == (False,)
    # An autoregressive model that is not the package's decodes y itself.
    context = JointAutoregressiveHierarchicalPriors(8, 8)
    context.update(force=True)
    symbols.install_symbol_taps(context)
    assert decode_guard.read_in_bounds(context) == (False, True)
    monkeypatch.setattr(rans, "_native", None)
    for name in ("bmshj2018-hyperprior", "mbt2018"):
        assert decode_guard.read_in_bounds(models[name]) == (False, False)


def test_check_finite_and_compress_input():
    decode_guard.check_finite(torch.zeros(1, 3, 4, 4))
    decode_guard.check_finite([torch.zeros(2), torch.ones(2)])
    bad = torch.zeros(1, 3, 4, 4)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(BitstreamError, match="1 non-finite"):
        decode_guard.check_finite([torch.zeros(2), bad])
    decode_guard.check_compress_input(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        decode_guard.check_compress_input(bad)
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\]"):
        decode_guard.check_compress_input(torch.full((1, 3, 2, 2), 2.0))
    decode_guard.check_compress_input(torch.full((1, 3, 2, 2), 2.0), high=None)


# ------------------------------------------------------- the bound of the padding


@pytest.fixture(scope="module")
def entropy_tables():
    return entropy_model_tables(ragged=True)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.integers(0, 1),
    data=streams,
    symbols=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_any_stream_stays_inside_the_padding(
    entropy_tables, table, data, symbols, seed
):
    cdfs, lengths, offsets = entropy_tables[table]
    data, indexes = random_case(data, len(cdfs), symbols, seed)
    padded = data + bytes(decode_guard.padding_bytes(symbols, data))
    # Never raises OutOfBounds: every read of the model stays in the buffer ...
    expected, read = reference_decode(padded, indexes, cdfs, lengths, offsets)
    # ... and the model is the native decoder, symbol for symbol.
    native = RansDecoder().decode_with_indexes(padded, indexes, cdfs, lengths, offsets)
    assert native == expected
    assert read <= len(padded)


def test_valid_streams_read_exactly_their_bytes(entropy_tables):
    rng = random.Random(1)
    for table in (0, 1):
        cdfs, lengths, offsets = entropy_tables[table]
        for spread in (2, 40, 5000):  # 5000: every symbol in bypass mode
            indexes = [rng.randrange(len(cdfs)) for _ in range(200)]
            symbols = [rng.randint(-spread, spread) for _ in indexes]
            data = RansEncoder().encode_with_indexes(
                symbols, indexes, cdfs, lengths, offsets
            )
            assert len(data) <= decode_guard.max_string_length(len(indexes))
            decoded, read = reference_decode(data, indexes, cdfs, lengths, offsets)
            assert decoded == symbols and read == len(data)


def test_reference_detects_reads_past_the_end(entropy_tables):
    cdfs, lengths, offsets = entropy_tables[0]
    with pytest.raises(OutOfBounds):
        reference_decode(valid_start(bytes(8)), [0] * 500, cdfs, lengths, offsets)


@pytest.mark.parametrize("block", [1, 3, 4, 7, 1 << 16])
def test_data_length_drops_trailing_zero_words_across_scan_blocks(monkeypatch, block):
    # Found block by block from the end: the same answer as stripping the zeros
    # byte by byte, wherever the blocks' edges fall.
    monkeypatch.setattr(decode_guard, "_SCAN_BLOCK", block)
    gen = torch.Generator().manual_seed(block)
    strings = [b"", b"\0" * 5, b"\1", b"\1" + bytes(40), bytes(40) + b"\1"]
    for _ in range(200):
        n = int(torch.randint(0, 40, (1,), generator=gen))
        values = torch.randint(0, 4, (n,), generator=gen).tolist()
        strings.append(bytes(v if v == 3 else 0 for v in values))
    for string in strings:
        length = len(string.rstrip(b"\0"))
        expected = max(8, length + (-length) % 4)
        assert decode_guard._data_length(string) == expected, string
        assert decode_guard._data_length(bytearray(string)) == expected


def test_no_padding_proportional_to_the_string_alone_can_be_safe(entropy_tables):
    """Why the padding grows with the number of symbols, not with the bytes the
    string holds: a string of only its 8-byte start state makes CompressAI's
    decoder read about 2 bytes per symbol past its end (each symbol then decodes
    as the table's first, of frequency 1: 16 bits of state). No bound in
    O(len(string)) can keep it in the buffer; only a decoder that checks the end
    of its buffer could."""
    rng = random.Random(2)
    for cdfs, lengths, offsets in entropy_tables:
        symbols = 1000
        data = valid_start(bytes(rng.randrange(256) for _ in range(8)))
        indexes = [rng.randrange(len(cdfs)) for _ in range(symbols)]
        padded = data + bytes(decode_guard.padding_bytes(symbols, data))
        _, read = reference_decode(padded, indexes, cdfs, lengths, offsets)
        assert read - len(data) > 1.5 * symbols
        assert read <= len(padded)


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


def _word_string(state: int, length: int) -> bytes:
    import sys

    return state.to_bytes(8, sys.byteorder) + b"\1" * (length - 8)


def _words(*values: int) -> bytes:
    import numpy as np

    return np.array(values, dtype=np.uint32).tobytes()


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


def test_latent_layout_probes_on_the_device_of_the_weights():
    from compressai_psic.models.guard import latent_layout

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for parameter in (True, False):
            stub = _StubOnDevice(torch.zeros(1, device=device), parameter)
            assert latent_layout(stub).padding_multiple == 64
            assert stub.sizes == [(1, 3, 64, 128)]


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
