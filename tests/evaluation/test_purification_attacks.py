"""Tests of the purification attacks (blur<s>, median<k>, downup<k>, noisyup)."""

import math

import pytest
import torch

from compressai_psic.evaluation.attacks import (
    DEFAULT_ATTACKS,
    PURIFICATION_ATTACKS,
    build_attack,
    build_attacks,
)
from compressai_psic.evaluation.pixels import (
    downscale,
    jpeg_reencode,
    noisy_upscale_8bit,
    quantise_8bit,
)

from .helpers import smooth_images


def psnr(a, b):
    mse = (a - b).pow(2).mean().item()
    return 10 * math.log10(1 / mse)


def fine_pattern():
    idx = torch.arange(40)
    board = ((idx[:, None] + torch.arange(48)[None, :]) % 2).float()
    return (0.25 + 0.5 * board).expand(2, 3, 40, 48).contiguous()


def test_purification_attacks_listed_in_defaults():
    assert set(PURIFICATION_ATTACKS) <= set(DEFAULT_ATTACKS)
    assert "noisyup" in PURIFICATION_ATTACKS


@pytest.mark.parametrize("name", PURIFICATION_ATTACKS)
def test_purification_attack_is_8bit_in_range(name):
    attack = build_attack(name)
    assert attack.name == name
    x = smooth_images() * 0.9 + 0.05
    out = attack(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out * 255, (out * 255).round(), atol=1e-4, rtol=0)
    assert not torch.equal(out, quantise_8bit(x)) or name.startswith("median")


@pytest.mark.parametrize(
    "name", ["blur0", "blur0.0", "blur11", "median2", "median4", "median1", "downup1"]
)
def test_invalid_purification_names_raise(name):
    with pytest.raises(ValueError):
        build_attack(name)


def test_noisyup_deterministic_across_calls():
    x = smooth_images()
    first = build_attack("noisyup")(x)
    second = build_attack("noisyup")(x)
    torch.testing.assert_close(first, second)
    assert (first - quantise_8bit(x)).abs().max() > 0


def test_blur1_keeps_smooth_and_damps_fine_pattern():
    blur = build_attack("blur1")
    x = smooth_images()
    assert psnr(blur(x), x) > 35
    fine = fine_pattern()
    out = blur(fine)
    assert (out - out.mean()).pow(2).mean() < 0.05 * (fine - fine.mean()).pow(2).mean()
    assert psnr(out, fine) < 15


def test_median3_removes_salt_and_downup2_washes_fine_pattern():
    x = smooth_images()
    salted = quantise_8bit(x).clone()
    salted[:, :, ::7, ::5] = 1.0  # isolated salt pixels
    out = build_attack("median3")(salted)
    assert psnr(out, x) > psnr(salted, x) + 10
    fine = fine_pattern()
    out = build_attack("downup2")(fine)
    assert out.std() < 0.05 * fine.std()
    for name in ("median3", "downup2"):
        assert psnr(build_attack(name)(x), x) > 30, name


def test_purification_chains_and_build_attacks():
    attacks = build_attacks(["blur1", "jpeg75+median3"])
    assert list(attacks) == ["blur1", "jpeg75+median3"]
    out = attacks["jpeg75+median3"](smooth_images())
    assert out.shape == smooth_images().shape


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
