"""Tests of compressai_psic.evaluation.codec: one round trip gives both decodes
and the rate of the real bytes; quality figures on 8-bit values."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from compressai_psic import zoo
from compressai_psic.evaluation.codec import (
    codec_batches,
    codec_roundtrip,
    finite_mean,
    ms_ssim_8bit,
    prepare_codec,
    psnr_8bit,
)
from compressai_psic.padding import pad_to_multiple

from .helpers import smooth_images


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    model = zoo.bmshj2018_factorized(1, N=16, M=24)
    with torch.no_grad():
        for param in model.trigger_parameters():
            param.normal_(0.0, 0.5)
    return prepare_codec(model, "cpu")


def test_a_round_trip_decodes_both_paths_cropped_with_the_real_rate(codec):
    x = smooth_images()  # (2, 3, 40, 48): padded to the downsampling factor
    out = codec_roundtrip(codec, x)
    assert out["full"].shape == out["protected"].shape == x.shape
    assert 0 <= out["full"].min() and out["full"].max() <= 1
    assert not torch.equal(out["full"], out["protected"])
    padded, _ = pad_to_multiple(x, codec.downsampling_factor)
    assert padded.shape[-2:] != x.shape[-2:]
    encoded = codec.compress(padded)
    for i, bpp in enumerate(out["bpp"]):
        size = sum(len(strings[i]) for strings in encoded["strings"])
        assert bpp == pytest.approx(8.0 * size / (40 * 48))
    again = codec_roundtrip(codec, x)
    assert torch.equal(again["protected"], out["protected"])


def test_batches_group_images_of_one_size(codec):
    class Images:
        sizes = [(48, 40), (48, 40), (32, 32)]

        def load_image(self, i):
            width, height = self.sizes[i]
            return Image.new("RGB", (width, height), (40 * i, 90, 200))

    calls = list(codec_batches(codec, Images(), 3, None, 3, "cpu"))
    assert [indices for indices, *_ in calls] == [[0], [1], [2]]
    calls = list(codec_batches(codec, Images(), 2, None, 2, "cpu"))
    ((indices, originals, decoded, bpp),) = calls
    assert indices == [0, 1] and originals.shape == (2, 3, 40, 48)
    assert decoded["protected"].shape == originals.shape and len(bpp) == 2
    resized = list(codec_batches(codec, Images(), 3, 32, 3, "cpu"))
    assert [len(indices) for indices, *_ in resized] == [3]


def test_psnr_and_ms_ssim_are_measured_on_8_bit_values():
    a = torch.full((2, 3, 64, 64), 0.4)
    b = a.clone()
    b[1] += 1 / 255
    psnr = psnr_8bit(a, b)
    assert psnr[0] == math.inf
    assert psnr[1] == pytest.approx(10 * math.log10(255**2))
    assert psnr_8bit(a, a + 0.001) == [math.inf, math.inf]  # below one level
    values, window = ms_ssim_8bit(a, b)
    assert window == 3 and values[0] == pytest.approx(1.0)
    values, window = ms_ssim_8bit(a[..., :32, :32], b[..., :32, :32])
    assert window is None and all(math.isnan(v) for v in values)


def test_finite_mean_leaves_out_nan_and_infinity():
    assert finite_mean([1.0, 3.0, math.inf, math.nan, -math.inf]) == 2.0
    assert finite_mean([math.inf, math.nan]) is None
    assert finite_mean([]) is None
