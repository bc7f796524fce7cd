"""Tests of the blind purifications (blur, median, down-up, noisy upscaling)."""

import pytest
import torch

from compressai_psic.train.criterion import build_eot
from compressai_psic.transforms import (
    MedianFilter,
    NoisyUpscale,
    RandomBlur,
    RandomDownUp,
    down_up,
    gaussian_blur,
    gaussian_kernel,
    median_filter,
    noisy_upscale,
    purification_transforms,
)


def checkerboard(size=32, cell=1):
    idx = torch.arange(size) // cell
    board = ((idx[:, None] + idx[None, :]) % 2).float()
    return board.expand(1, 3, size, size).contiguous()


def energy(x):
    """Energy of the deviation from the mean (the pattern's AC energy)."""
    return (x - x.mean()).pow(2).mean().item()


def smooth(batch=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return up.clamp(0, 1)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 1.7, 3.0])
def test_gaussian_kernel_normalised_and_symmetric(sigma):
    kernel = gaussian_kernel(sigma)
    assert kernel.dim() == 1 and kernel.numel() % 2 == 1
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(kernel, kernel.flip(0))
    centre = kernel.numel() // 2
    assert kernel.argmax().item() == centre
    # Radius ⌈3σ⌉ (at least 1).
    assert centre == max(1, -(-3 * sigma // 1))


def test_gaussian_kernel_wider_for_larger_sigma():
    assert gaussian_kernel(2.0).numel() > gaussian_kernel(0.5).numel()
    assert gaussian_kernel(2.0).max() < gaussian_kernel(0.5).max()


@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
@pytest.mark.parametrize("sigma", [0.5, 1.5, 4.0])
def test_blur_keeps_constant(value, sigma):
    x = torch.full((2, 3, 12, 10), value)
    out = gaussian_blur(x, sigma)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_blur_damps_checkerboard_more_for_larger_sigma():
    x = checkerboard(32)
    before = energy(x)
    e05 = energy(gaussian_blur(x, 0.5))
    e1 = energy(gaussian_blur(x, 1.0))
    e2 = energy(gaussian_blur(x, 2.0))
    assert e1 < 0.05 * before
    assert e2 < e1 < e05 < before
    # The mean is kept (the kernel sums to 1, reflect padding).
    assert gaussian_blur(x, 1.0).mean().item() == pytest.approx(x.mean().item(), 1e-3)


def test_blur_tiny_image_falls_back_to_replicate():
    x = torch.rand(1, 3, 3, 3)
    out = gaussian_blur(x, 2.0)  # radius 6 > size: replicate padding
    assert out.shape == x.shape
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6


def test_median_removes_salt_and_keeps_constant():
    x = torch.full((1, 3, 16, 16), 0.4)
    torch.testing.assert_close(median_filter(x, 3), x)
    salted = x.clone()
    salted[..., 3, 5] = 1.0
    salted[..., 10, 12] = 0.0
    salted[:, 1, 0, 0] = 1.0  # a corner pixel (reflect padding)
    torch.testing.assert_close(median_filter(salted, 3), x)
    torch.testing.assert_close(median_filter(salted, 5), x)


def test_median_size_one_is_identity_and_keeps_edges():
    x = torch.rand(2, 3, 8, 8)
    assert median_filter(x, 1) is x
    # A step edge is kept by the median (unlike by a blur).
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    torch.testing.assert_close(median_filter(step, 3), step)


@pytest.mark.parametrize("factor", [2, 4])
def test_down_up_keeps_shape_and_constant(factor):
    x = torch.full((2, 3, 16, 24), 0.6)
    out = down_up(x, factor)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_down_up_removes_two_pixel_checkerboard():
    x = checkerboard(32, cell=2)  # 2-px cells: every 4×4 block averages to 0.5
    out = down_up(x, 4)
    assert out.shape == x.shape
    torch.testing.assert_close(out, torch.full_like(x, 0.5), atol=1e-5, rtol=0)
    assert energy(down_up(checkerboard(32, cell=1), 2)) < 1e-8


def test_down_up_clamps_and_odd_size():
    x = torch.rand(1, 3, 15, 17)
    out = down_up(x, 2)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


def test_noisy_upscale_reproducible_and_seeded():
    x = smooth()
    a = noisy_upscale(x, generator=torch.Generator().manual_seed(3))
    b = noisy_upscale(x, generator=torch.Generator().manual_seed(3))
    c = noisy_upscale(x, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    # A mild purification: close to the input, but not equal.
    assert 1e-6 < (a - x).pow(2).mean() < 0.01


@pytest.mark.parametrize(
    "module",
    [RandomBlur(0.5, 1.5), MedianFilter(3), RandomDownUp((2, 4)), NoisyUpscale()],
    ids=["blur", "median", "downup", "noisyup"],
)
def test_gradients_reach_input(module):
    x = smooth(size=16).requires_grad_(True)
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = module(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    (out * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_modules_draw_parameters_from_generator():
    x = smooth(size=16)
    blur = RandomBlur(0.5, 3.0)
    a = blur(x, generator=torch.Generator().manual_seed(0))
    b = blur(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    outs = [blur(x, generator=torch.Generator().manual_seed(s)) for s in range(6)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize(
    "make",
    [
        lambda: gaussian_kernel(0.0),
        lambda: gaussian_kernel(-1.0),
        lambda: gaussian_blur(torch.rand(1, 3, 8, 8), 0),
        lambda: median_filter(torch.rand(1, 3, 8, 8), 2),
        lambda: median_filter(torch.rand(1, 3, 8, 8), 0),
        lambda: down_up(torch.rand(1, 3, 8, 8), 1),
        lambda: RandomBlur(0.0, 1.0),
        lambda: RandomBlur(2.0, 1.0),
        lambda: MedianFilter(4),
        lambda: MedianFilter(0),
        lambda: RandomDownUp(()),
        lambda: RandomDownUp((1, 2)),
    ],
)
def test_invalid_arguments_raise(make):
    with pytest.raises(ValueError):
        make()


def test_purification_transforms_names():
    transforms = purification_transforms()
    assert list(transforms) == ["blur", "median", "downup", "noisyup"]
    assert isinstance(transforms["blur"], RandomBlur)
    assert isinstance(transforms["median"], MedianFilter)
    assert isinstance(transforms["downup"], RandomDownUp)
    assert isinstance(transforms["noisyup"], NoisyUpscale)


def test_build_eot_with_purifications():
    eot = build_eot("identity,blur,median,downup,noisyup", seed=0)
    assert eot.names == ("identity", "blur", "median", "downup", "noisyup")
    x = smooth(batch=8, size=16)
    out = eot(x)
    assert out.shape == x.shape
    assert set(eot.last_choices) <= set(eot.names)
    again = build_eot("identity,blur,median,downup,noisyup", seed=0)
    torch.testing.assert_close(again(x), out)
    with pytest.raises(ValueError):
        build_eot("blur,sharpen", seed=0)
