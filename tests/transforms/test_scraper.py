"""Tests of the differentiable scraper transforms (compressai_psic.transforms)."""

from __future__ import annotations

import math

import pytest
import torch

from compressai_psic.evaluation import jpeg_reencode
from compressai_psic.transforms import (
    DiffJPEG,
    GreyWorld,
    Identity,
    RandomJPEG,
    RandomResize,
    RandomScraperTransform,
    dct_matrix,
    default_scraper_transforms,
    diff_jpeg,
    differentiable_round,
    grey_world,
    jpeg_quant_tables,
    resize,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / (a - b).pow(2).mean().item())


def smooth_images(height: int = 40, width: int = 56) -> torch.Tensor:
    """Two smooth 8-bit images (ramps and a slow wave), sizes not multiples of 16."""
    ys = torch.linspace(0, 1, height).view(-1, 1)
    xs = torch.linspace(0, 1, width).view(1, -1)
    one = torch.stack(
        [
            xs.expand(height, width),
            ys.expand(height, width),
            0.4 + 0.2 * torch.sin(6 * xs + 4 * ys),
        ]
    )
    images = torch.stack([one, one.flip(-1) * 0.8 + 0.1])
    return images.mul(255).round().div(255)


def textured_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 32, 32, generator=generator).mul(255).round().div(255)


# ---------------------------------------------------------------------- pieces


def test_quant_tables_follow_the_ijg_scaling():
    luma50, chroma50 = jpeg_quant_tables(50)
    assert luma50[0, 0] == 16 and luma50[7, 7] == 99 and chroma50[0, 0] == 17
    luma75, chroma75 = jpeg_quant_tables(75)
    # scale 50: floor((16 * 50 + 50) / 100) = 8, floor((99 * 50 + 50) / 100) = 50
    assert luma75[0, 0] == 8 and luma75[7, 7] == 50 and chroma75[7, 7] == 50
    luma100, chroma100 = jpeg_quant_tables(100)
    assert luma100.eq(1).all() and chroma100.eq(1).all()
    luma10, _ = jpeg_quant_tables(10)  # scale 500
    assert luma10[0, 0] == 80 and luma10.max() == 255
    both_luma, _ = jpeg_quant_tables([50, 75])
    assert both_luma.shape == (2, 8, 8)
    torch.testing.assert_close(both_luma[1], luma75)
    with pytest.raises(ValueError):
        jpeg_quant_tables(0)


def test_dct_is_orthonormal_and_colour_conversion_inverts():
    dct = dct_matrix(8, dtype=torch.float64)
    torch.testing.assert_close(dct @ dct.t(), torch.eye(8, dtype=torch.float64))
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5, rtol=0)
    # Grey has no chroma.
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert rgb_to_ycbcr(grey)[:, 1:].abs().max() < 1e-6


def test_differentiable_round():
    x = torch.tensor([-1.6, -0.2, 0.4, 0.6, 2.5], requires_grad=True)
    ste = differentiable_round(x, "ste")
    torch.testing.assert_close(ste.detach(), torch.round(x.detach()))
    ste.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    dense = torch.linspace(-3, 3, 601)
    cubic = differentiable_round(dense, "cubic")
    assert (cubic - torch.round(dense)).abs().max() <= 0.125 + 1e-6
    with pytest.raises(ValueError):
        differentiable_round(x, "floor")


# ------------------------------------------------------------------------- JPEG


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_diff_jpeg_matches_pil_jpeg(quality):
    smooth = smooth_images()
    approx, real = diff_jpeg(smooth, quality), jpeg_reencode(smooth, quality)
    assert approx.shape == smooth.shape
    assert 0 <= approx.min() and approx.max() <= 1
    # Measured 43.8-48.8 dB on these images (PIL's own error is 38-45 dB).
    assert psnr(approx, real) > 40
    # On texture JPEG destroys a lot (about 12 dB), and the approximation
    # reproduces what it destroys (measured 35-39 dB to PIL's output).
    textured = textured_images()
    approx, real = diff_jpeg(textured, quality), jpeg_reencode(textured, quality)
    assert psnr(real, textured) < 20
    assert psnr(approx, real) > 30


def test_diff_jpeg_quality_orders_the_error_and_is_per_image():
    x = textured_images()
    errors = [psnr(diff_jpeg(x, q), x) for q in (20, 50, 90, 100)]
    assert errors == sorted(errors)
    both = diff_jpeg(x, torch.tensor([20, 90]))
    torch.testing.assert_close(both[:1], diff_jpeg(x[:1], 20))
    torch.testing.assert_close(both[1:], diff_jpeg(x[1:], 90))
    # Quality 100 without chroma subsampling is nearly lossless.
    assert psnr(diff_jpeg(x, 100, chroma_subsampling=False), x) > 45
    with pytest.raises(ValueError):
        diff_jpeg(x, [50, 60, 70])


@pytest.mark.parametrize("rounding", ["ste", "cubic"])
def test_diff_jpeg_passes_gradients(rounding):
    x = smooth_images().requires_grad_(True)
    target = torch.rand_like(x)
    loss = (diff_jpeg(x, 75, rounding=rounding) - target).pow(2).mean()
    loss.backward()
    assert torch.isfinite(x.grad).all()
    # Every image, and every channel, gets a gradient.
    assert (x.grad.abs().flatten(2).sum(-1) > 0).all()


# ----------------------------------------------------------------------- resize


def test_resize():
    x = smooth_images()
    assert resize(x, 1.0) is x
    for mode in ("area", "bilinear", "bicubic"):
        out = resize(x, 0.5, mode)
        assert out.shape == x.shape
        assert psnr(out, x) > 30  # smooth content survives
        small = resize(x, 0.5, mode, restore_size=False)
        assert small.shape[-2:] == (20, 28)
    torch.testing.assert_close(
        resize(x, 0.5, "area", restore_size=False),
        torch.nn.functional.avg_pool2d(x, 2),
    )
    # Fine detail does not survive.
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2).float()
    checker = checker.expand(1, 3, 32, 32)
    assert (resize(checker, 0.5, "area") - 0.5).abs().max() < 1e-6
    g = x.clone().requires_grad_(True)
    resize(g, 0.6, "bilinear").sum().backward()
    assert g.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        resize(x, 0.5, "nearest")


# ------------------------------------------------------------------- grey world


def test_grey_world_equalises_channel_means_and_undoes_gain_offset():
    x = smooth_images() * 0.5 + 0.2
    out = grey_world(x, clamp=False)
    means = out.mean(dim=(2, 3))
    torch.testing.assert_close(means, means[:, :1].expand_as(means))
    # Brightness is kept: the mean over channels does not move.
    torch.testing.assert_close(means[:, 0], x.mean(dim=(1, 2, 3)))
    # A per-channel gain and offset (a colour cast) is removed.
    gain = torch.tensor([0.6, 1.3, 0.9]).view(1, 3, 1, 1)
    offset = torch.tensor([0.15, -0.1, 0.05]).view(1, 3, 1, 1)
    cast = x * gain + offset
    target = ([0.45, 0.45, 0.45], [0.12, 0.12, 0.12])
    torch.testing.assert_close(
        grey_world(cast, *target, eps=1e-9, clamp=False),
        grey_world(x, *target, eps=1e-9, clamp=False),
        atol=1e-5,
        rtol=0,
    )
    # With the neutral target, the cast image's correction differs from the
    # clean image's by one brightness/contrast change common to all channels.
    from_cast = grey_world(cast, eps=1e-9, clamp=False)
    from_clean = grey_world(x, eps=1e-9, clamp=False)
    ratio = from_cast.std(dim=(2, 3)) / from_clean.std(dim=(2, 3))
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    assert not torch.allclose(cast.std(dim=(2, 3)) / x.std(dim=(2, 3)), ratio)
    # Same channel statistics in, same image out (up to eps).
    balanced = x[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(
        grey_world(balanced, eps=1e-9), balanced, atol=1e-5, rtol=0
    )
    # Explicit targets are met exactly.
    targeted = grey_world(x, [0.3, 0.5, 0.7], [0.1, 0.1, 0.2], eps=0, clamp=False)
    torch.testing.assert_close(
        targeted.mean(dim=(2, 3)), torch.tensor([[0.3, 0.5, 0.7]] * 2)
    )
    torch.testing.assert_close(
        targeted.std(dim=(2, 3), unbiased=False), torch.tensor([[0.1, 0.1, 0.2]] * 2)
    )
    g = cast.clone().requires_grad_(True)
    grey_world(g).pow(2).sum().backward()
    assert torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0


# ---------------------------------------------------------------------- modules


@pytest.mark.parametrize("device", DEVICES)
def test_random_scraper_transform_is_seeded_and_keeps_order(device):
    x = smooth_images().repeat(4, 1, 1, 1).to(device)  # 8 images
    x = x * torch.linspace(0.5, 1.0, 8, device=device).view(-1, 1, 1, 1)
    transform = RandomScraperTransform(
        {"identity": Identity(), "grey": GreyWorld()}, seed=0
    )
    out = transform(x)
    choices = transform.last_choices
    assert set(choices) == {"identity", "grey"}  # 8 draws, both happen
    for i, choice in enumerate(choices):
        expected = x[i : i + 1] if choice == "identity" else grey_world(x[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], expected)
    # Same seed, same draws; a given generator overrides the module's.
    again = RandomScraperTransform(
        {"identity": Identity(), "grey": GreyWorld()}, seed=0
    )
    torch.testing.assert_close(again(x), out)
    assert again.last_choices == choices
    other = again(x, generator=torch.Generator().manual_seed(1))
    assert again.last_choices != choices or not torch.equal(other, out)
    # Zero weight: never drawn.
    only_grey = RandomScraperTransform(
        {"identity": Identity(), "grey": GreyWorld()}, weights=[0, 1], seed=0
    )
    torch.testing.assert_close(only_grey(x), grey_world(x))


def test_default_scraper_transform_passes_gradients_to_every_image():
    torch.manual_seed(0)
    x = smooth_images().repeat(3, 1, 1, 1).requires_grad_(True)
    transform = RandomScraperTransform(seed=2)
    assert set(transform.names) == set(default_scraper_transforms())
    out = transform(x)
    assert out.shape == x.shape
    assert 0 <= out.min() and out.max() <= 1
    out.sum().backward()
    assert (x.grad.abs().flatten(1).sum(1) > 0).all()
    # Every random member runs and keeps the shape.
    generator = torch.Generator().manual_seed(0)
    for module in (RandomJPEG(30, 90), RandomResize(0.3, 0.9), DiffJPEG(60)):
        assert module(x, generator=generator).shape == x.shape
    with pytest.raises(ValueError):
        RandomJPEG(90, 30)
    with pytest.raises(ValueError):
        RandomResize(0.5, 1.5)
    with pytest.raises(ValueError):
        RandomScraperTransform({"a": Identity()}, weights=[1, 2])
