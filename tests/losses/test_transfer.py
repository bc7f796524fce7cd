"""Tests of the transfer terms (compressai_psic.losses.transfer)."""

import pytest
import torch

from compressai_psic.losses.transfer import (
    FEATURE_STAGES,
    activity_weights,
    balanced_sum,
    feature_disruption,
    has_resnet_tower,
    masked_difference,
    resnet_features,
)
from compressai_psic.vlp import VLPEnsemble, build_demo_clip, tiny_vlp, wrap_demo_clip

RN_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 32,
        "layers": [1, 1, 1, 1],
        "width": 8,
        "head_width": 8,
    },
    "text_cfg": {
        "context_length": 48,
        "vocab_size": 49408,
        "width": 16,
        "heads": 2,
        "layers": 1,
    },
}


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
