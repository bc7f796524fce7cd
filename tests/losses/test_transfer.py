"""Tests of the transfer terms (compressai_psic.losses.transfer)."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from compressai_psic.losses.transfer import (
    FEATURE_STAGES,
    activity_weights,
    balanced_sum,
    feature_disruption,
    has_resnet_tower,
    masked_difference,
    periodic_energy,
    resnet_features,
)
from compressai_psic.vlp import VLPEnsemble, build_demo_clip, tiny_vlp, wrap_demo_clip

from .helpers import RN_CONFIG


@pytest.fixture(scope="module")
def rn_vlp():
    return wrap_demo_clip(build_demo_clip(RN_CONFIG, seed=0).eval(), name="rn")


@pytest.fixture(scope="module")
def vit_vlp():
    return tiny_vlp(seed=0)


def images(batch=2, size=32, seed=0):
    return torch.rand(
        batch, 3, size, size, generator=torch.Generator().manual_seed(seed)
    )


def textured_left(size=32, seed=0):
    """Left half noise (texture), right half flat grey."""
    x = torch.full((1, 3, size, size), 0.5)
    g = torch.Generator().manual_seed(seed)
    x[..., : size // 2] = torch.rand(1, 3, size, size // 2, generator=g)
    return x


# -- balanced_sum --


def test_balanced_sum_value_and_gradients():
    a = torch.tensor(1.5, requires_grad=True)
    b = torch.tensor(0.7, requires_grad=True)
    c = torch.tensor(2.0, requires_grad=True)
    losses = [a**2, 3 * b, c.exp()]
    grads = [2 * a.detach(), torch.tensor(3.0), c.detach().exp()]
    weights = [0.5, 0.3, 0.2]
    plain = sum(w * loss.detach() for w, loss in zip(weights, losses))
    total = balanced_sum(losses, weights)
    assert total.item() == pytest.approx(plain.item(), rel=1e-6)
    total.backward()
    for x, w, loss, grad in zip((a, b, c), weights, losses, grads):
        expected = w * plain / loss.detach() * grad
        assert x.grad.item() == pytest.approx(expected.item(), rel=1e-4)


def test_balanced_sum_default_weights_is_mean():
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(10.0, requires_grad=True)
    total = balanced_sum([a * 1.0, b * 1.0])
    assert total.item() == pytest.approx(6.0)
    total.backward()
    # Each gradient is 0.5 · 6 / L_m: the smaller loss pulls harder.
    assert a.grad.item() == pytest.approx(1.5, rel=1e-5)
    assert b.grad.item() == pytest.approx(0.3, rel=1e-5)


def test_balanced_sum_invalid():
    with pytest.raises(ValueError):
        balanced_sum([])
    with pytest.raises(ValueError):
        balanced_sum([torch.tensor(1.0), torch.tensor(2.0)], [1.0])


# -- activity weights and masked difference --


def test_activity_weights_mean_one_and_flat_heavier():
    target = torch.cat([textured_left(seed=0), textured_left(seed=1).flip(-1)])
    weights = activity_weights(target)
    assert weights.shape == (2, 1, 32, 32)
    torch.testing.assert_close(
        weights.mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-5, rtol=0
    )
    # Image 0: flat right half; image 1: flat left half (away from the border).
    assert weights[0, :, :, 22:].mean() > 5 * weights[0, :, :, :10].mean()
    assert weights[1, :, :, :10].mean() > 5 * weights[1, :, :, 22:].mean()
    flat = activity_weights(torch.full((1, 3, 8, 8), 0.3))
    torch.testing.assert_close(flat, torch.ones_like(flat))


def test_activity_weights_invalid():
    x = torch.rand(1, 3, 8, 8)
    for kwargs in ({"window": 4}, {"window": 0}, {"floor": 0.0}):
        with pytest.raises(ValueError):
            activity_weights(x, **kwargs)


def test_masked_difference_costs_flat_more_than_texture():
    target = textured_left()
    full = target.clone()
    delta = torch.zeros_like(target)
    delta[..., 8:24, 2:12] = 0.05  # inside the texture
    in_texture = masked_difference(full + delta, full, target)
    on_flat = masked_difference(full + delta.flip(-1), full, target)
    assert (delta**2).sum() == (delta.flip(-1) ** 2).sum()
    assert on_flat > 5 * in_texture > 0
    assert masked_difference(full, full, target).item() == 0


def test_masked_difference_shape_mismatch_is_zero_and_attached():
    target = images(2)
    protected = images(1, seed=1).requires_grad_(True)
    out = masked_difference(protected, images(2, seed=2), target)
    assert out.item() == 0
    out.backward()
    assert protected.grad is not None and protected.grad.abs().sum() == 0


def test_masked_difference_gradient():
    target = textured_left()
    protected = (target + 0.01).requires_grad_(True)
    masked_difference(protected, target, target).backward()
    grad = protected.grad
    assert grad[..., 22:].abs().mean() > grad[..., :10].abs().mean()


# -- feature disruption --


def test_has_resnet_tower(rn_vlp, vit_vlp):
    assert has_resnet_tower(rn_vlp)
    assert not has_resnet_tower(vit_vlp)
    assert not has_resnet_tower(object())


@pytest.mark.parametrize("stage", FEATURE_STAGES)
def test_resnet_features_shapes(rn_vlp, stage):
    out = resnet_features(rn_vlp, images(2), stage)
    assert out.dim() == 4 and out.size(0) == 2
    assert out.dtype == torch.float32


def test_resnet_features_deeper_stages_are_smaller(rn_vlp):
    sizes = [resnet_features(rn_vlp, images(1), s).shape[-1] for s in FEATURE_STAGES]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_resnet_features_invalid(rn_vlp, vit_vlp):
    with pytest.raises(ValueError, match="stage"):
        resnet_features(rn_vlp, images(1), "layer5")
    with pytest.raises(ValueError, match="ResNet"):
        resnet_features(vit_vlp, images(1), "layer3")


def test_feature_disruption_values_and_gradient(rn_vlp):
    x = images(2)
    same = feature_disruption(rn_vlp, x, x)
    assert same.item() == pytest.approx(2.0, abs=1e-4)
    changed = images(2, seed=5).requires_grad_(True)
    value = feature_disruption(rn_vlp, changed, x, stage="layer2")
    assert 0 <= value.item() < 2.0 - 1e-3
    value.backward()
    assert changed.grad is not None and changed.grad.abs().sum() > 0


def test_feature_disruption_vit_only_is_zero(vit_vlp, rn_vlp):
    x = images(2)
    changed = images(2, seed=3).requires_grad_(True)
    out = feature_disruption(vit_vlp, changed, x)
    assert out.item() == 0
    out.backward()
    assert changed.grad is not None and changed.grad.abs().sum() == 0
    # In a mixed ensemble only the ResNet member counts.
    mixed = VLPEnsemble([vit_vlp, rn_vlp], weights=[3, 1])
    torch.testing.assert_close(
        feature_disruption(mixed, changed, x), feature_disruption(rn_vlp, changed, x)
    )


def test_feature_disruption_empty_batch(rn_vlp):
    empty = torch.zeros(0, 3, 32, 32)
    assert feature_disruption(rn_vlp, empty, empty).item() == 0


def exactly(message):
    return f"^{re.escape(message)}$"


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _reference_weights(target, window, floor, mode):
    grey = target.mean(dim=1, keepdim=True)
    radius = window // 2
    padded = F.pad(grey, (radius,) * 4, mode=mode)
    mean = F.avg_pool2d(padded, window, stride=1)
    sigma = (F.avg_pool2d(padded**2, window, stride=1) - mean**2).clamp_min(0).sqrt()
    weights = 1 / (sigma + floor)
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def wave(height, width, cycles_y=0, cycles_x=0, amplitude=1.0, batch=1):
    """A cosine of ``cycles_y`` periods down and ``cycles_x`` across the image."""
    y = torch.arange(height, dtype=torch.float64)[:, None] / height
    x = torch.arange(width, dtype=torch.float64)[None, :] / width
    values = amplitude * torch.cos(2 * math.pi * (cycles_y * y + cycles_x * x))
    return values.expand(batch, 3, height, width).clone()


def test_resnet_features_default_stage_and_messages(rn_vlp):
    x = rand(2, 3, 32, 32)
    assert torch.equal(resnet_features(rn_vlp, x), resnet_features(rn_vlp, x, "layer3"))
    vit = tiny_vlp(seed=0)
    with pytest.raises(
        ValueError, match=exactly(f"VLP {vit.name!r} has no ResNet image tower")
    ):
        resnet_features(vit, x)
    with pytest.raises(
        ValueError, match=exactly("VLP 'object' has no ResNet image tower")
    ):
        resnet_features(object(), x)


def test_resnet_features_of_a_float64_tower():
    member = wrap_demo_clip(build_demo_clip(RN_CONFIG, seed=0).double().eval())
    features = resnet_features(member, rand(1, 3, 32, 32), "layer1")
    assert features.dtype == torch.float32


def test_activity_weights_window_one_and_messages():
    x = rand(1, 3, 8, 8)
    assert torch.allclose(activity_weights(x, window=1), torch.ones(1, 1, 8, 8))
    for window in (0, 4):
        with pytest.raises(
            ValueError,
            match=exactly(f"window must be a positive odd number, got {window}"),
        ):
            activity_weights(x, window=window)
    with pytest.raises(ValueError, match=exactly("floor must be positive, got 0")):
        activity_weights(x, floor=0)


def test_activity_weights_pad_by_reflection_then_replication():
    x = rand(2, 3, 9, 7)
    expected = _reference_weights(x, 5, 0.02, "reflect")
    assert torch.allclose(activity_weights(x), expected, atol=1e-6)
    assert not torch.allclose(
        expected, _reference_weights(x, 5, 0.02, "replicate"), atol=1e-3
    )
    # The radius reaches the size (2 of 2): reflection is impossible.
    small = rand(1, 3, 2, 5)
    assert torch.allclose(
        activity_weights(small), _reference_weights(small, 5, 0.02, "replicate")
    )


def test_masked_difference_single_pixel_and_floor():
    a, b = torch.full((1, 1, 1, 1), 0.75), torch.full((1, 1, 1, 1), 0.25)
    assert masked_difference(a, b, a).item() == pytest.approx(0.25)
    x, y, target = rand(2, 3, 8, 8, seed=1), rand(2, 3, 8, 8, seed=2), rand(2, 3, 8, 8)
    expected = (activity_weights(target, 5, 0.5) * (x - y) ** 2).mean()
    assert masked_difference(x, y, target, floor=0.5).item() == pytest.approx(
        expected.item()
    )


def test_balanced_sum_messages_and_eps():
    with pytest.raises(
        ValueError, match=exactly("balanced_sum needs at least one loss")
    ):
        balanced_sum([])
    with pytest.raises(ValueError, match=exactly("Need 2 weights, got 1")):
        balanced_sum([torch.tensor(1.0), torch.tensor(2.0)], [1.0])
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(4.0, requires_grad=True)
    total = balanced_sum([a, b], [0.5, 0.5], eps=0.5)
    total.backward()
    plain = 0.5 * 2 + 0.5 * 4
    assert total.item() == pytest.approx(0.5 * 2 / 2.5 * plain + 0.5 * 4 / 4.5 * plain)
    assert a.grad.item() == pytest.approx(0.5 / 2.5 * plain)
    assert b.grad.item() == pytest.approx(0.5 / 4.5 * plain)


def test_a_lattice_frequency_keeps_all_its_energy():
    # 32 px, period 16: the lattice holds every second frequency; 2 cycles are
    # a 16-pixel pattern, all of whose energy (mean square 0.5·a²) is counted.
    full = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    for cycles in ((0, 2), (2, 0), (2, 4), (4, 6)):
        protected = wave(32, 32, *cycles, amplitude=0.3, batch=2)
        value = periodic_energy(protected, full)
        assert value.item() == pytest.approx(0.5 * 0.3**2, rel=1e-9)
        assert value.item() == pytest.approx(protected.pow(2).mean().item())


def test_frequencies_off_the_lattice_and_dc_are_not_counted():
    full = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    for cycles in ((0, 1), (1, 0), (3, 3), (0, 5)):
        protected = full + wave(32, 32, *cycles)
        assert periodic_energy(protected, full).item() == pytest.approx(0, abs=1e-12)
    # A constant change (DC) is a colour shift, not a lattice.
    assert periodic_energy(full + 0.25, full).item() == pytest.approx(0, abs=1e-12)


def test_only_the_lattice_part_of_a_mixture_counts():
    full = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    on, off = wave(32, 32, 0, 2, amplitude=0.5), wave(32, 32, 1, 0, amplitude=0.7)
    value = periodic_energy(on + off + 0.1, full).item()
    assert value == pytest.approx(0.5 * 0.5**2, rel=1e-9)


def test_the_period_sets_the_lattice():
    full = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    sixteen = wave(32, 32, 0, 2)  # a 16-pixel pattern
    eight = wave(32, 32, 0, 4)  # an 8-pixel one
    assert periodic_energy(sixteen, full, period=8).item() == pytest.approx(
        0, abs=1e-12
    )
    assert periodic_energy(eight, full, period=8).item() == pytest.approx(0.5)
    assert periodic_energy(eight, full, period=16).item() == pytest.approx(0.5)
    # period = size: every frequency is on the lattice (all but DC).
    assert periodic_energy(wave(32, 32, 1, 3), full, period=32).item() == (
        pytest.approx(0.5)
    )


def test_rows_and_columns_use_their_own_size():
    # 32 high, 64 wide, period 16: rows step 2, columns step 4.
    full = torch.zeros(1, 3, 32, 64, dtype=torch.float64)
    assert periodic_energy(wave(32, 64, 0, 4), full).item() == pytest.approx(0.5)
    assert periodic_energy(wave(32, 64, 2, 0), full).item() == pytest.approx(0.5)
    assert periodic_energy(wave(32, 64, 0, 2), full).item() == pytest.approx(
        0, abs=1e-12
    )
    assert periodic_energy(wave(32, 64, 1, 0), full).item() == pytest.approx(
        0, abs=1e-12
    )


def test_mean_over_images_and_channels():
    full = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    protected = torch.zeros_like(full)
    protected[0, 1] = wave(32, 32, 0, 2)[0, 0]
    assert periodic_energy(protected, full).item() == pytest.approx(0.5 / 6)


def test_no_lattice_is_zero_and_attached():
    a = torch.rand(2, 3, 32, 32, requires_grad=True)
    cases = [
        (a, torch.rand(2, 3, 32, 16)),  # shapes differ
        (a[..., :24, :], torch.rand(2, 3, 24, 32)),  # height not a multiple
        (a[..., :24], torch.rand(2, 3, 32, 24)),  # width not a multiple
        (a[:0], torch.rand(0, 3, 32, 32)),  # empty batch
    ]
    for protected, full in cases:
        value = periodic_energy(protected, full)
        assert value.item() == 0
        assert value.requires_grad


def test_gradient_pushes_the_lattice_part_down():
    full = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    protected = (wave(32, 32, 0, 2) + wave(32, 32, 1, 0)).requires_grad_(True)
    periodic_energy(protected, full).backward()
    # d/dx mean(lattice(x)²) = 2·lattice(x)/N: the gradient is the lattice part.
    expected = 2 * wave(32, 32, 0, 2) / protected.numel()
    assert torch.allclose(protected.grad, expected, atol=1e-12)


def test_one_image_without_a_batch_dimension():
    full = torch.zeros(3, 32, 64, dtype=torch.float64)
    protected = wave(32, 64, 2, 4)[0]
    assert periodic_energy(protected, full).item() == pytest.approx(0.5)
    assert periodic_energy(wave(32, 64, 0, 2)[0], full).item() == pytest.approx(
        0, abs=1e-12
    )
