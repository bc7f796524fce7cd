"""The transfer terms, the rate–distortion loss and PSICLoss in detail:
messages, defaults, boundaries, options that must reach their term, and each
optional term's exact place in the total."""

import re

import pytest
import torch
import torch.nn.functional as F

from compressai_psic.losses import DualPathRateDistortionLoss, PSICLoss
from compressai_psic.losses.psic import (
    common_difference,
    low_frequency_mse,
    semantic_drift,
)
from compressai_psic.losses.rate_distortion import decoded_paths
from compressai_psic.losses.transfer import (
    activity_weights,
    balanced_sum,
    masked_difference,
    periodic_energy,
    resnet_features,
)
from compressai_psic.vlp import build_demo_clip, tiny_vlp, wrap_demo_clip

from .helpers import P3, U3, V3, captions, color_images, color_vlp, model_output
from .test_transfer import RN_CONFIG


def exactly(message):
    return f"^{re.escape(message)}$"


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# -- transfer terms --


@pytest.fixture(scope="module")
def rn_vlp():
    return wrap_demo_clip(build_demo_clip(RN_CONFIG, seed=0).eval(), name="rn")


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


def _reference_weights(target, window, floor, mode):
    grey = target.mean(dim=1, keepdim=True)
    radius = window // 2
    padded = F.pad(grey, (radius,) * 4, mode=mode)
    mean = F.avg_pool2d(padded, window, stride=1)
    sigma = (F.avg_pool2d(padded**2, window, stride=1) - mean**2).clamp_min(0).sqrt()
    weights = 1 / (sigma + floor)
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


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


# -- rate–distortion --


def test_rate_distortion_messages_and_overall_mean():
    x = rand(3, 3, 4, 4)
    loss = DualPathRateDistortionLoss()
    with pytest.raises(
        ValueError,
        match=exactly(
            'The output has no "beta": decode with a shielded model\'s forward or '
            "forward_multi, or pass beta (a (B,) tensor, 1 = protected, 0 = full)"
        ),
    ):
        decoded_paths({"x_hat": x}, x)
    with pytest.raises(
        ValueError,
        match=exactly(
            "beta must hold 0 (full) or 1 (protected) for each sample; got [0.0, 0.5]"
        ),
    ):
        decoded_paths({"x_hat": x}, x, torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(
        ValueError, match=exactly("output holds no reconstruction on any path")
    ):
        empty = {"x_hat": x[:0], "likelihoods": {"y": rand(0, 8, 2, 2)}}
        loss(empty, x[:0], beta=torch.zeros(0))
    x_hat = [rand(3, 3, 4, 4, seed=1), rand(3, 3, 4, 4, seed=2)]
    out = loss(model_output(x_hat, 3), x)
    errors = torch.cat([(h - x).pow(2).flatten(1).mean(1) for h in x_hat])
    assert out["mse_loss"].item() == pytest.approx(errors.mean().item())


# -- the PSIC terms --


def test_term_functions_on_empty_single_and_mismatched_inputs():
    empty = torch.zeros(0, 3, 4, 4)
    vlp = color_vlp(V3)
    for value in (
        low_frequency_mse(empty, empty, 8),
        semantic_drift(vlp, empty, empty),
        common_difference(empty, empty),
    ):
        assert value.item() == 0
    one, other = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.25)
    assert low_frequency_mse(one, other, 8).item() == pytest.approx(0.0625)
    assert common_difference(one, other).item() == pytest.approx(0.0625)
    mismatched = common_difference(rand(2, 3, 4, 4), rand(1, 3, 4, 4))
    assert mismatched.item() == 0


@pytest.mark.parametrize("height, width", [(4, 16), (16, 4)])
@pytest.mark.parametrize("leading", [(2, 3), (3,)])
def test_low_frequency_kernel_fits_both_sides(height, width, leading):
    x, y = rand(*leading, height, width, seed=1), rand(*leading, height, width, seed=2)
    kernel = min(height, width)
    expected = F.mse_loss(F.avg_pool2d(x, kernel), F.avg_pool2d(y, kernel))
    assert low_frequency_mse(x, y, 8).item() == pytest.approx(expected.item())


def test_semantic_drift_is_the_mean_over_images():
    vlp = color_vlp(V3)
    x, x_hat = color_images(U3[:2]), color_images(P3[:2])  # 2 images, 3 dimensions
    u = vlp.encode_image(x)
    p = vlp.encode_image(x_hat)
    expected = (1 - (u * p).sum(-1)).mean()
    assert semantic_drift(vlp, x_hat, x).item() == pytest.approx(expected.item())


def test_psic_defaults_and_options_reach_their_parts():
    vlp = color_vlp(V3)
    loss = PSICLoss(vlp)
    assert loss.stage == 1
    assert loss.lmbda_vlp == 0.0009
    assert loss.lowfreq_kernel == 8
    for name in ("semantic", "lowfreq", "common", "feature", "masked", "periodic"):
        assert getattr(loss, f"lmbda_{name}") == 0.0, name
    assert PSICLoss(vlp, stage=2).stage == 2
    assert PSICLoss(vlp, lowfreq_kernel=1).lowfreq_kernel == 1
    assert PSICLoss(vlp, metric="ms-ssim").rate_distortion.metric == "ms-ssim"
    assert PSICLoss(vlp, tau=0.3, clean_weight=2.0).uaeo.tau == 0.3


@pytest.mark.parametrize(
    "name", ["semantic", "lowfreq", "common", "feature", "masked", "periodic"]
)
def test_negative_lambda_messages(name):
    with pytest.raises(
        ValueError, match=exactly(f"lmbda_{name} must be >= 0, got -0.5")
    ):
        PSICLoss(color_vlp(V3), **{f"lmbda_{name}": -0.5})


def test_lowfreq_kernel_message():
    with pytest.raises(ValueError, match=exactly("lowfreq_kernel must be >= 1, got 0")):
        PSICLoss(color_vlp(V3), lowfreq_kernel=0)


def _psic_batch():
    x = color_images(U3, size=16)
    full = (x * 0.9 + 0.1 * color_images(V3, size=16)).requires_grad_(True)
    y = torch.arange(16.0) / 16
    lattice = 0.05 * torch.cos(2 * torch.pi * y * 1)[None, None, None, :]
    protected = (color_images(P3, size=16) + lattice).requires_grad_(True)
    return x, full, protected


TERMS = ("semantic", "lowfreq", "common", "masked", "periodic")


def _expected_terms(vlp, x, full, protected):
    return {
        "semantic": semantic_drift(vlp, full, x),
        "lowfreq": 255**2 * low_frequency_mse(protected, x, 8),
        "common": 255**2 * common_difference(protected, full),
        "masked": 255**2 * masked_difference(protected, full, x),
        "periodic": 255**2 * periodic_energy(protected, full, period=16),
    }


def test_every_optional_term_is_zero_by_default():
    x, full, protected = _psic_batch()
    out = PSICLoss(color_vlp(V3))(model_output([full, protected], 3), x, captions(3))
    for name in TERMS + ("feature",):
        assert out[f"{name}_loss"].item() == 0, name


@pytest.mark.parametrize("name", TERMS)
def test_each_term_enters_the_total_with_its_lambda(name):
    vlp = color_vlp(V3)
    x, full, protected = _psic_batch()
    output = model_output([full, protected], 3)
    base = PSICLoss(vlp)(output, x, captions(3))
    out = PSICLoss(vlp, **{f"lmbda_{name}": 0.5})(output, x, captions(3))
    expected = _expected_terms(vlp, x, full, protected)[name]
    assert expected.item() > 0
    assert out[f"{name}_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(
        base["loss"].item() + 0.5 * expected.item(), rel=1e-5
    )
    for other in TERMS:  # the other terms are neither computed nor reported
        if other != name:
            assert out[f"{other}_loss"].item() == 0, other


def test_pair_terms_with_explicit_betas_and_batches_of_one():
    vlp = color_vlp(V3[:1])
    x, full, protected = (t[:1] for t in _psic_batch())
    loss = PSICLoss(vlp, lmbda_common=1.0, lmbda_masked=1.0, lmbda_periodic=1.0)
    output = {
        "x_hat": [full, protected],
        "likelihoods": model_output(x, 1)["likelihoods"],
    }
    out = loss(output, x, captions(1), beta=[torch.zeros(1), torch.ones(1)])
    expected = _expected_terms(vlp, x, full, protected)
    for name in ("common", "masked", "periodic"):
        assert out[f"{name}_loss"].item() == pytest.approx(expected[name].item()), name


def test_pair_terms_need_both_paths():
    vlp = color_vlp(V3)
    x, full, protected = _psic_batch()
    loss = PSICLoss(vlp, lmbda_common=1.0, lmbda_masked=1.0, lmbda_periodic=1.0)
    both_protected = model_output(
        [protected, protected * 0.5], 3, beta=[torch.ones(3), torch.ones(3)]
    )
    single = model_output(protected, 3, beta=torch.ones(3))
    for output in (both_protected, single):
        out = loss(output, x, captions(3))
        for name in ("common", "masked", "periodic"):
            assert out[f"{name}_loss"].item() == 0, name
        assert out["loss"].requires_grad


def test_feature_term_sees_the_transformed_decode(rn_vlp):
    from compressai_psic.losses.transfer import feature_disruption

    x = rand(2, 3, 32, 32)
    full, protected = rand(2, 3, 32, 32, seed=1), rand(2, 3, 32, 32, seed=2)
    flip = lambda images: images.flip(-1)  # noqa: E731
    out = PSICLoss(rn_vlp, lmbda_feature=1.0, transform=flip)(
        model_output([full, protected], 2), x, ["a", "b"]
    )
    expected = feature_disruption(rn_vlp, flip(protected), x)
    assert out["feature_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
