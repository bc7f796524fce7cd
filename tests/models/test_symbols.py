"""The symbol digest (models/symbols.py): a decode whose symbols are not the
encoder's raises DesyncError, never returns a wrong image; and decodes on
another thread count, without oneDNN, or in portable mode, match."""

from __future__ import annotations

import contextlib
import pickle
import zlib
from typing import Iterator

import pytest
import torch

from compressai_psic.errors import BitstreamError, DesyncError
from compressai_psic.models import ZOO_ARCHITECTURES, rans, symbols
from tools._lib.photos import photo_crops

from .helpers import calibrated_zoo_model, tiny_base, tiny_zoo_model

# torch.backends.mkldnn.flags() warns that TF32 on oneDNN needs an Intel GPU.
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")

ARCHITECTURES = ZOO_ARCHITECTURES
HYPER = [name for name in ARCHITECTURES if name != "bmshj2018-factorized"]


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return photo_crops(1)[0]


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.int16)


def encode(model, x, portable=False):
    with torch.no_grad(), threads(2):
        return model.compress(x, portable=portable)


def decode(model, out, **kwargs):
    with torch.no_grad():
        return model.decompress(
            out["strings"],
            out["shape"],
            portable=out["portable"],
            symbols_digest=out["symbols_digest"],
            **kwargs,
        )


def test_check_and_its_messages():
    assert symbols.SymbolRecorder("encode").digest is None
    symbols.check_symbols_digest(None, 5)
    symbols.check_symbols_digest(5, None)
    symbols.check_symbols_digest(5, 5)
    with pytest.raises(DesyncError, match=r"^the decoded latents .* --portable$"):
        symbols.check_symbols_digest(1, 2)
    with pytest.raises(BitstreamError, match="the file is portable"):
        symbols.check_symbols_digest(1, 2, portable=True)
    with pytest.raises(ValueError, match="encode"):
        symbols.SymbolRecorder("both")


def test_the_digest_is_the_crc32_of_the_symbols_in_coding_order():
    recorder = symbols.SymbolRecorder("decode")
    recorder.add(torch.tensor([[1, -2]], dtype=torch.int32))
    recorder.add(torch.tensor([3.0, 4.0]))
    data = bytes.fromhex("01000000feffffff0300000004000000")
    assert recorder.digest == zlib.crc32(data)
    assert recorder.count == 4


def test_taps_keep_the_state_and_survive_pickling():
    model = tiny_zoo_model("mbt2018-mean")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert symbols.install_symbol_taps(model) == 2  # already there: counted
    assert model.state_dict().keys() == state.keys()
    copy = pickle.loads(pickle.dumps(model))
    assert isinstance(copy.entropy_bottleneck, symbols.SymbolTapEntropyBottleneck)
    assert isinstance(copy.gaussian_conditional, symbols.SymbolTapGaussianConditional)
    x = photo_crops(1, 64)[0]
    with torch.no_grad():
        assert model.compress(x)["symbols_digest"] == copy.compress(x)["symbols_digest"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_another_thread_count_or_no_onednn_decodes_the_same(name, photo):
    """Encode with 2 threads, decode with 1 and with oneDNN off: the same
    symbols and 8-bit pixels within 1 level, or DesyncError."""
    model = calibrated_zoo_model(name, photo)
    out = encode(model, photo)
    assert out["symbols_digest"] is not None
    with torch.no_grad(), threads(2):
        reference = to_8bit(model.decompress(out["strings"], out["shape"])["x_hat"])
    contexts = [threads(1), torch.backends.mkldnn.flags(enabled=False)]
    caught_or_close(model, out, reference, [(name, c) for c in contexts])


def caught_or_close(model, out, reference, contexts) -> int:
    """Decodes ``out`` inside each ``(what, context)``: DesyncError, or 8-bit
    pixels within 1 level of ``reference``. Returns the number of DesyncErrors."""
    desyncs = 0
    for what, context in contexts:
        with context:
            try:
                x_hat = decode(model, out)["x_hat"]
            except DesyncError:
                desyncs += 1
                continue
        error = (to_8bit(x_hat) - reference).abs().max()
        assert error <= 1, f"{what}: a wrong image returned ({error})"
    return desyncs


@contextlib.contextmanager
def drifting(model, scale: float) -> Iterator[None]:
    """The hyper-synthesis' output (the context model's for the autoregressive
    models too) scaled by ``scale`` at decode, as on another device."""
    modules = [model.h_s] + [
        getattr(model, n) for n in ("entropy_parameters",) if hasattr(model, n)
    ]
    handles = [
        m.register_forward_hook(lambda _m, _i, output: output * scale) for m in modules
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def last_bit_flipped(module: torch.nn.Module) -> Iterator[None]:
    weight = module.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        flat = weight.view(-1)
        bits = flat[:1].view(torch.int32)
        flat[:1] = (bits ^ 1).view(torch.float32)
    try:
        yield
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def _drifts(model):
    for scale in (1 + 1e-6, 1 + 1e-5, 1 + 1e-4, 1 - 1e-4):
        yield f"scale {scale}", drifting(model, scale)
    convolutions = [
        m for m in model.h_s if isinstance(m, torch.nn.modules.conv._ConvNd)
    ]
    yield "last bit of h_s[-1]", last_bit_flipped(convolutions[-1])


@pytest.mark.parametrize("name", HYPER)
def test_drifting_entropy_parameters_never_give_a_wrong_image(name):
    """Every drift either keeps the symbols (pixels within 1 level) or raises
    DesyncError; a decode that would have been wrong is always caught."""
    crops = photo_crops(2, 128)
    model = calibrated_zoo_model(name, crops[0])
    for x in crops:
        out = encode(model, x)
        with torch.no_grad():
            reference = to_8bit(model.decompress(out["strings"], out["shape"])["x_hat"])
        caught_or_close(model, out, reference, _drifts(model))
    # Not vacuous: a large drift always desynchronises, and is caught.
    out = encode(model, photo_crops(1, 128)[0])
    with drifting(model, 1.5), pytest.raises(DesyncError):
        decode(model, out)


@pytest.mark.skipif(not rans.available(), reason="the C extension was not built")
def test_a_desynchronised_decode_without_the_digest_fails_the_stream_check():
    # Files without a digest (format 1) are decoded in bounds too: a string
    # decoded with other tables does not end where the encoder started.
    model = tiny_zoo_model("bmshj2018-hyperprior")
    out = encode(model, photo_crops(1, 128)[0])
    with torch.no_grad():
        good = model.decompress(out["strings"], out["shape"])
    assert good["symbols_digest"] == out["symbols_digest"]
    with drifting(model, 1.5), pytest.raises(DesyncError, match="consistently"):
        with torch.no_grad():
            model.decompress(out["strings"], out["shape"])
    # Outside a shielded decode (no recorder), the entropy model raises itself.
    with pytest.raises(DesyncError, match="bytes after its last symbol"):
        model.entropy_bottleneck.decompress(
            [out["strings"][1][0] + b"\1\0\0\0"], out["shape"]
        )


@pytest.mark.skipif(not rans.available(), reason="the C extension was not built")
def test_a_corrupted_string_without_the_digest_raises():
    model = tiny_zoo_model("bmshj2018-factorized")
    out = encode(model, photo_crops(1, 128)[0])
    (string,) = out["strings"][0]
    middle = len(string) // 2
    corrupted = string[:middle] + bytes([string[middle] ^ 1]) + string[middle + 1 :]
    with torch.no_grad(), pytest.raises(DesyncError, match="consistently"):
        model.decompress([[corrupted]], out["shape"])


def test_the_recorder_keeps_the_first_inconsistent_string():
    recorder = symbols.SymbolRecorder("decode")
    good = rans.StreamCheck(0, 0, rans.INITIAL_STATE)
    first, second = rans.StreamCheck(2, 0, 5), rans.StreamCheck(0, 4, 5)
    for check in (good, first, second):
        recorder.add_stream(check)
    assert recorder.inconsistent is first
    with pytest.raises(DesyncError, match="2 words past its end"):
        symbols.check_streams(recorder)
    symbols.check_streams(symbols.SymbolRecorder("decode"))


def test_decompress_multi_checks_the_digest_too():
    model = tiny_zoo_model("mbt2018-mean")
    out = encode(model, photo_crops(1, 128)[0])
    args = (out["strings"], out["shape"])
    with torch.no_grad():
        both = model.decompress_multi(*args, symbols_digest=out["symbols_digest"])
        assert len(both["x_hat"]) == 2
        with pytest.raises(DesyncError):
            model.decompress_multi(*args, symbols_digest=out["symbols_digest"] ^ 1)


def test_models_pickled_before_the_digest_get_it_on_load():
    from compressai.entropy_models import GaussianConditional

    from compressai_psic.models import portable

    model = tiny_zoo_model("bmshj2018-hyperprior")
    # As a pickle of an earlier version: no taps, a plain h_s, no flag.
    symbols.remove_symbol_taps(model)
    portable.remove_hyper_synthesis(model)
    del model._psic_portable
    assert type(model.gaussian_conditional) is GaussianConditional
    loaded = pickle.loads(pickle.dumps(model))
    assert isinstance(loaded.gaussian_conditional, symbols.SymbolTapGaussianConditional)
    assert loaded.supports_portable
    with torch.no_grad():
        assert loaded.compress(torch.rand(1, 3, 64, 64))["symbols_digest"] is not None


def test_tapped_entropy_models_decode_in_bounds_after_copies_and_untapping():
    import copy

    from compressai.entropy_models import EntropyBottleneck

    model = tiny_zoo_model("bmshj2018-hyperprior")
    out = encode(model, photo_crops(1, 128)[0])
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        for module in (copied.entropy_bottleneck, copied.gaussian_conditional):
            assert isinstance(module, symbols.BoundedDecompress)
            assert module.decodes_in_bounds == rans.available()
        assert decode(copied, out)["symbols_digest"] == out["symbols_digest"]
    symbols.remove_symbol_taps(model)
    assert type(model.entropy_bottleneck) is EntropyBottleneck


@pytest.mark.skipif(not rans.available(), reason="the C extension was not built")
def test_bounded_decompress_decodes_what_compressai_s_decompress_decodes(monkeypatch):
    model = tiny_zoo_model("mbt2018-mean")
    x = photo_crops(1, 128)[0]
    out = encode(model, x)
    z_hat = model.entropy_bottleneck.decompress(out["strings"][1], out["shape"])
    scales, means = model.h_s(z_hat).chunk(2, 1)
    indexes = model.gaussian_conditional.build_indexes(scales)
    bounded = model.gaussian_conditional.decompress(
        out["strings"][0], indexes, means=means
    )
    monkeypatch.setattr(rans, "_native", None)
    assert not model.gaussian_conditional.decodes_in_bounds
    native = model.gaussian_conditional.decompress(
        out["strings"][0], indexes, means=means
    )
    assert torch.equal(bounded, native)
    # Without means too (CompressAI's path keeps the dtype asked for).
    plain = model.gaussian_conditional.decompress(out["strings"][0], indexes)
    assert plain.dtype == torch.float32


@pytest.mark.skipif(not rans.available(), reason="the C extension was not built")
@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m, s, i, mu: m.decompress(s[0], i),
            "^need one string per row of indexes$",
        ),
        (lambda m, s, i, mu: m.decompress(s * 2, i), "one string per row"),
        (
            lambda m, s, i, mu: m.decompress(s, i.reshape(-1)[:1]),
            r"^indexes need at least 2 dimensions \(batch, channels\)$",
        ),
        (lambda m, s, i, mu: m.decompress(s, i, means=mu[:, :1]), "do not fit"),
        (lambda m, s, i, mu: m.decompress(s, i, means=mu[..., :2]), "do not fit"),
    ],
)
def test_bounded_decompress_refuses_arguments_that_do_not_fit(call, message):
    model = tiny_zoo_model("mbt2018-mean")
    out = encode(model, photo_crops(1, 128)[0])
    z_hat = model.entropy_bottleneck.decompress(out["strings"][1], out["shape"])
    scales, means = model.h_s(z_hat).chunk(2, 1)
    indexes = model.gaussian_conditional.build_indexes(scales)
    with pytest.raises(ValueError, match=message):
        call(model.gaussian_conditional, out["strings"][0], indexes, means)
    # Two dimensions are enough: (batch, symbols).
    gaussian = model.gaussian_conditional
    flat = gaussian.decompress(out["strings"][0], indexes.reshape(1, -1))
    full = gaussian.decompress(out["strings"][0], indexes)
    assert torch.equal(flat, full.reshape(1, -1))
    # A means tensor of one value per channel broadcasts, as in CompressAI.
    model.gaussian_conditional.decompress(
        out["strings"][0], indexes, means=means[..., :1, :1]
    )


def test_the_messages_psic_prints_for_a_decode_that_went_wrong():
    other_machine = (
        "the decoded latents are not the encoder's (symbol CRC-32 00000002, the "
        "file says 00000001): this machine computed other entropy parameters than "
        "the encoder did, and the image would be garbage; decode on the kind of "
        "device (and software versions) that encoded it, or encode it again with "
        "--portable"
    )
    with pytest.raises(DesyncError) as caught:
        symbols.check_symbols_digest(1, 2)
    assert str(caught.value) == other_machine
    with pytest.raises(DesyncError) as caught:
        symbols.check_symbols_digest(1, 2, portable=True)
    assert str(caught.value) == (
        "the decoded latents are not the encoder's (symbol CRC-32 00000002, the "
        "file says 00000001): the file is portable, so its bitstream or the model "
        "differ from the encoder's; check the file and that the weights are the same"
    )
    recorder = symbols.SymbolRecorder("decode")
    recorder.add_stream(rans.StreamCheck(0, 4, rans.INITIAL_STATE))
    with pytest.raises(DesyncError) as caught:
        symbols.check_streams(recorder)
    assert str(caught.value) == (
        "a string of the bitstream did not decode consistently (4 bytes after its "
        "last symbol): the file is corrupted, or this machine computed other "
        "entropy parameters than the encoder did, and the image would be garbage"
    )


def test_the_digest_reads_symbols_of_any_dtype_as_int32():
    recorder = symbols.SymbolRecorder("decode")
    recorder.add(torch.tensor([[1.0, -2.0], [3.0, 70000.0]]))
    expected = zlib.crc32(torch.tensor([1, -2, 3, 70000], dtype=torch.int32).numpy())
    assert recorder.digest == expected and recorder.count == 4


@pytest.mark.skipif(not rans.available(), reason="the C extension was not built")
def test_with_a_digest_the_error_names_the_symbols_not_the_stream():
    # Both checks fail on a drifting decode; the digest's message names the
    # cause, so the stream check waits for it (the recorder keeps its result).
    model = tiny_zoo_model("bmshj2018-hyperprior")
    out = encode(model, photo_crops(1, 128)[0])
    with drifting(model, 1.5), pytest.raises(DesyncError) as caught:
        decode(model, out)
    assert "symbol CRC-32" in str(caught.value)
    assert "consistently" not in str(caught.value)


@pytest.mark.skipif(not rans.available(), reason="the C extension was not built")
def test_bounded_decompress_gives_the_dtype_asked_for_and_large_symbols_exactly(
    monkeypatch,
):
    from compressai.entropy_models import GaussianConditional
    from compressai.models.google import get_scale_table

    gaussian = GaussianConditional(None)
    gaussian.update_scale_table(get_scale_table())
    assert symbols.install_symbol_taps(gaussian) == 1
    assert gaussian.decodes_in_bounds
    # Beyond float32's integers (2**24): a float32 copy would round them.
    y = torch.tensor([2**24 + 1, -(2**24) - 3, 0, 5], dtype=torch.float64)
    y = y.reshape(1, 1, 2, 2)
    indexes = gaussian.build_indexes(torch.full_like(y, 0.5))
    strings = gaussian.compress(y, indexes)
    bounded = gaussian.decompress(strings, indexes, dtype=torch.float64)
    assert bounded.dtype == torch.float64
    assert torch.equal(bounded, y)
    monkeypatch.setattr(rans, "_native", None)
    native = gaussian.decompress(strings, indexes, dtype=torch.float64)
    assert torch.equal(native, bounded)


def test_installing_the_taps_again_counts_the_same_entropy_models():
    model = tiny_base("bmshj2018-hyperprior")  # CompressAI's, untapped
    assert symbols.install_symbol_taps(model) == 2
    assert isinstance(model.gaussian_conditional, symbols.BoundedDecompress)
    assert symbols.install_symbol_taps(model) == 2
