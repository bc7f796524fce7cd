"""Tests of compressai_psic.models.autoregressive: the autoregressive models'
``y`` decoded in bounds gives CompressAI's latents exactly, and a string that
does not decode consistently is refused."""

from __future__ import annotations

import pytest
import torch

from compressai_psic.errors import DesyncError
from compressai_psic.models import guard, rans
from compressai_psic.models.autoregressive import BoundedAutoregressiveDecoding
from compressai_psic.utils import pad_to_multiple

from .helpers import calibrated_zoo_model

AUTOREGRESSIVE = ["mbt2018", "cheng2020-anchor", "cheng2020-attn"]

needs_extension = pytest.mark.skipif(
    not rans.available(), reason="the C extension was not built"
)


def _image(seed=0):
    return torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(seed))


def _model(name):
    # Calibrated: latents that spread like a trained model's, so that y's
    # string has hundreds of bytes (a random tiny model codes zeros).
    padded, _ = pad_to_multiple(_image(), 64)
    return calibrated_zoo_model(name, padded)


def _coded(model, seed=0):
    padded, _ = pad_to_multiple(_image(seed), model.downsampling_factor)
    with torch.no_grad():
        return model.compress(padded)


def _decode(model, strings, shape, **kwargs):
    with torch.no_grad():
        return model.decompress(strings, shape, condition="full", **kwargs)


@needs_extension
@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_y_decodes_as_compressai_s_loop_decodes_it(monkeypatch, name):
    model = _model(name)
    assert isinstance(model, BoundedAutoregressiveDecoding)
    out = _coded(model)
    assert len(out["strings"][0][0]) > 100
    bounded = _decode(model, out["strings"], out["shape"])
    assert bounded["symbols_digest"] == out["symbols_digest"]
    # CompressAI's own loop and decoder, on the padded string.
    monkeypatch.setattr(rans, "_native", None)
    assert guard.read_in_bounds(model) == (False, False)
    native = _decode(model, out["strings"], out["shape"])
    assert torch.equal(bounded["x_hat"], native["x_hat"])
    assert native["symbols_digest"] == out["symbols_digest"]


@needs_extension
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_y_decodes_in_bounds_on_a_gpu():
    model = _model("mbt2018").cuda()
    model.update(force=True)
    padded, _ = pad_to_multiple(_image().cuda(), model.downsampling_factor)
    with torch.no_grad():
        out = model.compress(padded)
    decoded = _decode(model, out["strings"], out["shape"])
    assert decoded["x_hat"].device.type == "cuda"
    assert decoded["symbols_digest"] == out["symbols_digest"]


@needs_extension
def test_a_batch_decodes_each_string_in_bounds():
    model = _model("mbt2018")
    first, second = _coded(model, seed=1), _coded(model, seed=2)
    strings = [
        first["strings"][0] + second["strings"][0],
        first["strings"][1] + second["strings"][1],
    ]
    both = _decode(model, strings, first["shape"])["x_hat"]
    for index, single in enumerate((first, second)):
        one = _decode(model, single["strings"], single["shape"])["x_hat"]
        # The same latents; g_s on a batch of two differs in the last bits.
        assert torch.allclose(both[index : index + 1], one, atol=1e-5)


@needs_extension
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda y: y[:-4], "past its end"),
        (lambda y: y + b"\1\0\0\0", "4 bytes after its last symbol"),
        (lambda y: y[:8] + bytes([y[8] ^ 0x10]) + y[9:], "consistently"),
    ],
)
def test_a_y_string_that_does_not_decode_consistently_is_refused(edit, message):
    model = _model("mbt2018")
    out = _coded(model)
    (y_string,) = out["strings"][0]
    strings = [[edit(y_string)], out["strings"][1]]
    # No digest (a format 1 file): the stream check alone catches it.
    with pytest.raises(DesyncError, match=message):
        _decode(model, strings, out["shape"])


@needs_extension
def test_outside_a_shielded_decode_the_loop_raises_itself():
    model = _model("mbt2018")
    out = _coded(model)
    (y_string,) = out["strings"][0]
    z_hat = model.entropy_bottleneck.decompress(out["strings"][1], out["shape"])
    params = model.h_s(z_hat)
    height, width = (4 * s for s in z_hat.shape[2:])
    y_hat = torch.zeros(1, model.M, height + 4, width + 4)
    with torch.no_grad(), pytest.raises(DesyncError, match="bytes after"):
        model._decompress_ar(y_string + b"\1\0\0\0", y_hat, params, height, width, 5, 2)
