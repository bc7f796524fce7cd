"""Tests of compressai_psic.evaluation.pixels: the 8-bit pixel operations the
attacks are built from (quantisation, JPEG, down- and upscaling)."""

from __future__ import annotations

import pytest
import torch

from compressai_psic.evaluation.pixels import (
    downscale,
    jpeg_reencode,
    noisy_upscale_8bit,
    quantise_8bit,
)

from .helpers import psnr, smooth_images


def test_jpeg_keeps_size_and_range_and_quality_orders_the_error():
    images = smooth_images()
    errors = {}
    for quality in (75, 90):
        out = jpeg_reencode(images, quality)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        errors[quality] = (out - images).abs().mean().item()
        # 8-bit output, as a decoded file.
        torch.testing.assert_close(out * 255, (out * 255).round())
    assert 0 < errors[90] < errors[75] < 0.03
    with pytest.raises(ValueError):
        jpeg_reencode(images, 0)


def test_downscale_halves_and_keeps_content():
    images = smooth_images()
    out = downscale(images, 0.5)
    assert out.shape == (2, 3, 20, 24)
    assert 0.0 <= out.min() and out.max() <= 1.0
    pooled = torch.nn.functional.avg_pool2d(images, 2)
    assert (out - pooled).abs().mean() < 0.02


def test_quantise_8bit():
    x = torch.tensor([-0.2, 0.0, 0.5, 0.9999, 1.3])
    out = quantise_8bit(x)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 128 / 255, 1.0, 1.0]))


def test_pixel_helpers():
    x = smooth_images()
    jpeg = jpeg_reencode(x, 90)
    assert jpeg.shape == x.shape and psnr(jpeg, x) > 30
    with pytest.raises(ValueError):
        jpeg_reencode(x, 0)
    small = downscale(x, 0.5)
    assert small.shape == (2, 3, 20, 24)
    with pytest.raises(ValueError):
        downscale(x, 1.5)
    a, b = noisy_upscale_8bit(x, seed=1), noisy_upscale_8bit(x, seed=2)
    assert a.shape == x.shape and not torch.allclose(a, b)
    torch.testing.assert_close(noisy_upscale_8bit(x, seed=1), a)
