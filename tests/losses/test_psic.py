"""Tests of the total PSIC loss (compressai_psic.losses.psic): stages, optional
terms, finiteness and gradients through a shielded codec."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from compressai.registry import CRITERIONS
from hypothesis import given, settings
from hypothesis import strategies as st

from compressai_psic.losses import (
    DualPathRateDistortionLoss,
    PSICLoss,
    UAEOLoss,
    common_difference,
    low_frequency_mse,
    semantic_drift,
)
from compressai_psic.losses.transfer import (
    feature_disruption,
    masked_difference,
    periodic_energy,
)
from compressai_psic.vlp import build_demo_clip, tiny_vlp, wrap_demo_clip

from .helpers import (
    CAPTIONS,
    P3,
    RN_CONFIG,
    U3,
    V3,
    captions,
    color_images,
    color_vlp,
    model_output,
    noisy_batch,
)


def test_criteria_registered():
    assert CRITERIONS["psic-rd"] is DualPathRateDistortionLoss
    assert CRITERIONS["psic-uaeo"] is UAEOLoss
    assert CRITERIONS["psic"] is PSICLoss


# -- total loss --


def test_psic_loss_total_and_stages():
    vlp = color_vlp(V3)
    x = color_images(U3)
    x_hat = [color_images(U3) * 0.9, color_images(P3)]
    out = PSICLoss(vlp, lmbda_vlp=0.5)(model_output(x_hat, 3), x, captions(3))
    rd = DualPathRateDistortionLoss()(model_output(x_hat, 3), x)
    assert out["rd_loss"].item() == pytest.approx(rd["loss"].item())
    assert out["loss"].item() == pytest.approx(
        rd["loss"].item() + 0.5 * out["vlp_loss"].item()
    )
    assert out["clean_weight"].item() == 10.0
    stage2 = PSICLoss(vlp, stage=2)
    assert stage2.uaeo.weighting == "adaptive"
    assert PSICLoss(vlp, stage=2, weighting="fixed").uaeo.weighting == "fixed"
    with pytest.raises(ValueError, match="\\[1, 2\\]"):
        PSICLoss(vlp, stage=3)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(min_value=1, max_value=6),
    weighting=st.sampled_from(["fixed", "adaptive"]),
    both_paths=st.booleans(),
)
def test_losses_finite_for_any_batch_and_split(data, n, weighting, both_paths):
    seed = data.draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(n, 3, generator=g)
    vlp = color_vlp(table)
    x = torch.rand(n, 3, 4, 4, generator=g)
    x_hat = torch.rand(n, 3, 4, 4, generator=g).requires_grad_(True)
    beta = None
    if both_paths:
        output = model_output([x_hat * 0.5, x_hat], batch=n, seed=seed)
    else:
        bits = data.draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))
        beta = torch.tensor(bits, dtype=torch.float32)
        output = model_output(x_hat, batch=n, seed=seed)
    out = PSICLoss(vlp, stage=1 if weighting == "fixed" else 2)(
        output, x, captions(n), beta=beta
    )
    for key, value in out.items():
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            assert torch.isfinite(value), key
    out["loss"].backward()
    assert torch.isfinite(x_hat.grad).all()
    for split in out["split"]:
        clean, labels = split["clean"], split["image_labels"]
        m = len(split["index"])
        assert out["num_clean"] + out["num_uncertain"] == m
        assert ((labels == -1) == clean).all()
        uncertain = (~clean).nonzero().flatten()
        assert ((labels[uncertain] >= 0) & (labels[uncertain] < m)).all()
        assert (labels[uncertain] != uncertain).all()


# -- gradients through a shielded codec and a tiny open_clip --


def test_gradients_reach_synthesis_and_trigger_not_vlp():
    from compressai_psic import zoo

    torch.manual_seed(0)
    model = zoo.bmshj2018_hyperprior(1, N=16, M=24)
    vlp = tiny_vlp()
    x = torch.rand(2, 3, 64, 64)
    texts = ["a red square", "a small dog"]
    criterion = PSICLoss(vlp, stage=1)

    def grad_sums(prefix):
        return [
            0.0 if p.grad is None else p.grad.abs().sum().item()
            for n, p in model.named_parameters()
            if n.startswith(prefix)
        ]

    out = criterion(model.forward_multi(x), x, texts)
    assert math.isfinite(out["loss"].item())
    out["vlp_loss"].backward()
    # Fresh projections are zero (the shielded model starts as its base model), so
    # the UAEO gradient first reaches them and the synthesis...
    assert max(grad_sums("g_s.")) > 0
    assert max(grad_sums("trigger_proj.")) > 0
    # ...and, once they are non-zero, the condition encoder too.
    model.zero_grad()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("trigger_proj."):
                param.normal_(0, 0.05)
    criterion(model.forward_multi(x), x, texts)["vlp_loss"].backward()
    assert max(grad_sums("global_cond.")) > 0
    for param in vlp.parameters():
        assert param.grad is None and not param.requires_grad
    assert not vlp.training and not vlp.model.training

    model.zero_grad()
    beta = torch.tensor([1.0, 0.0])
    out = criterion(model(x, condition=beta), x, texts, beta=beta)
    out["loss"].backward()
    trigger = [p.grad for n, p in model.named_parameters() if n.startswith("global")]
    assert any(g is not None and g.abs().sum() > 0 for g in trigger)
    assert all(p.grad is None for p in vlp.parameters())


# ------------------------------------------------- terms that keep the shield honest
def test_low_frequency_term_sees_casts_not_texture():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cast = x + torch.tensor([0.1, -0.05, 0.0]).view(1, 3, 1, 1)
    expected = (0.1**2 + 0.05**2) / 3
    assert low_frequency_mse(cast, x, 8).item() == pytest.approx(expected, rel=1e-5)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 0.2 - 0.1
    textured = x + checker  # zero mean over every 8×8 block
    assert low_frequency_mse(textured, x, 8).item() == pytest.approx(0, abs=1e-12)
    assert low_frequency_mse(textured, x, 1).item() == pytest.approx(0.01, rel=1e-5)


def test_common_difference_separates_fixed_patterns_from_image_dependent_ones():
    g = torch.Generator().manual_seed(1)
    full = torch.rand(4, 3, 8, 8, generator=g)
    pattern = torch.randn(1, 3, 8, 8, generator=g) * 0.1
    fixed = common_difference(full + pattern, full)
    assert fixed.item() == pytest.approx(pattern.pow(2).mean().item(), rel=1e-5)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1, 1)
    assert common_difference(full + signs * pattern, full).item() == pytest.approx(
        0, abs=1e-12
    )


def test_semantic_drift_is_one_minus_cosine():
    vlp = color_vlp(V3)
    images = color_images(U3)
    assert semantic_drift(vlp, images, images).item() == pytest.approx(0, abs=1e-6)
    u = torch.nn.functional.normalize(torch.tensor(U3), dim=-1)
    p = torch.nn.functional.normalize(torch.tensor(P3), dim=-1)
    expected = (1 - (u * p).sum(-1)).mean().item()
    drift = semantic_drift(vlp, color_images(P3), images).item()
    assert drift == pytest.approx(expected, rel=1e-4)


def test_psic_loss_adds_each_optional_term_with_its_weight():
    vlp = color_vlp(V3)
    x = color_images(U3)
    x_full, x_prot = x * 0.9, color_images(P3)
    output = model_output([x_full, x_prot], 3)
    plain = PSICLoss(vlp, lmbda_vlp=0.5)(output, x, captions(3))
    loss = PSICLoss(
        vlp, lmbda_vlp=0.5, lmbda_semantic=2.0, lmbda_lowfreq=0.1, lmbda_common=0.3
    )
    out = loss(output, x, captions(3))
    assert out["semantic_loss"].item() == pytest.approx(
        semantic_drift(vlp, x_full, x).item(), rel=1e-5
    )
    assert out["lowfreq_loss"].item() == pytest.approx(
        255**2 * low_frequency_mse(x_prot, x, 8).item(), rel=1e-5
    )
    assert out["common_loss"].item() == pytest.approx(
        255**2 * common_difference(x_prot, x_full).item(), rel=1e-5
    )
    extra = (
        2.0 * out["semantic_loss"]
        + 0.1 * out["lowfreq_loss"]
        + 0.3 * out["common_loss"]
    )
    assert out["loss"].item() == pytest.approx(
        plain["loss"].item() + extra.item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="lmbda_common"):
        PSICLoss(vlp, lmbda_common=-1)


@pytest.mark.slow
def test_registration_has_one_route_whatever_the_import_order():
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "{before}"
        "import compressai_psic\n"
        "assert 'torch' not in sys.modules or {torch_first}\n"
        "import compressai.registry as r\n"
        "names = list(r.MODELS) + list(r.CRITERIONS)\n"
        "plain = sorted(k for k in names if 'psic' in k)\n"
        "import compressai_psic.models\n"
        "models = sorted(k for k in r.MODELS if k.startswith('psic'))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('compressai_psic'))\n"
        "compressai_psic.register()\n"
        "criteria = sorted(k for k in r.CRITERIONS if k.startswith('psic'))\n"
        "print(json.dumps([plain, models, loaded, criteria]))\n"
    )
    results = []
    for before, torch_first in (("", "False"), ("import compressai\n", "True")):
        code = probe.format(before=before, torch_first=torch_first)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        results.append(json.loads(out.stdout))
    (plain, models, loaded, criteria), other = results
    assert plain == []  # importing the package registers nothing by itself
    assert "psic-mbt2018" in models and "psic-hy2018" in models
    assert criteria == ["psic", "psic-rd", "psic-uaeo"]
    # What `import compressai_psic.models` loads does not depend on the order.
    assert other == results[0]
    assert not any(
        m.startswith(("compressai_psic.losses", "compressai_psic.train"))
        for m in loaded
    )


def exactly(message):
    return f"^{re.escape(message)}$"


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def rn_vlp():
    return wrap_demo_clip(build_demo_clip(RN_CONFIG, seed=0).eval(), name="rn")


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


def test_psic_reports_feature_and_masked_terms(rn_vlp):
    target, full, protected = noisy_batch()
    output = model_output([full, protected], batch=4)
    base = PSICLoss(rn_vlp)(output, target, CAPTIONS)
    assert base["feature_loss"].item() == 0 and base["masked_loss"].item() == 0
    with_terms = PSICLoss(
        rn_vlp, lmbda_feature=0.5, feature_stage="layer2", lmbda_masked=0.01
    )(output, target, CAPTIONS)
    feature = feature_disruption(rn_vlp, protected, target, "layer2")
    masked = 255**2 * masked_difference(protected, full, target)
    assert with_terms["feature_loss"].item() == pytest.approx(feature.item(), 1e-5)
    assert with_terms["masked_loss"].item() == pytest.approx(masked.item(), 1e-5)
    assert 0 < feature.item() < 2 and masked.item() > 0
    expected = base["loss"] + 0.5 * feature + 0.01 * masked
    assert with_terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    "key, term", [("lmbda_feature", "feature_loss"), ("lmbda_masked", "masked_loss")]
)
def test_lambda_scales_term(rn_vlp, key, term):
    target, full, protected = noisy_batch(1)
    output = model_output([full, protected], batch=4)
    one = PSICLoss(rn_vlp, **{key: 1.0})(output, target, CAPTIONS)
    three = PSICLoss(rn_vlp, **{key: 3.0})(output, target, CAPTIONS)
    assert one[term].item() > 0
    assert three[term].item() == pytest.approx(one[term].item(), rel=1e-6)
    assert (three["loss"] - one["loss"]).item() == pytest.approx(
        2 * one[term].item(), rel=1e-4
    )


def test_feature_term_has_gradient(rn_vlp):
    target, full, protected = noisy_batch(2)
    protected = protected.requires_grad_(True)
    output = model_output([full, protected], batch=4)
    out = PSICLoss(rn_vlp, lmbda_vlp=0.0, lmbda_feature=1.0)(output, target, CAPTIONS)
    out["feature_loss"].backward()
    assert protected.grad is not None and protected.grad.abs().sum() > 0


def test_psic_invalid_transfer_options(rn_vlp):
    with pytest.raises(ValueError, match="feature_stage"):
        PSICLoss(rn_vlp, feature_stage="layer9")
    with pytest.raises(ValueError, match="lmbda_feature"):
        PSICLoss(rn_vlp, lmbda_feature=-0.1)
    with pytest.raises(ValueError, match="lmbda_masked"):
        PSICLoss(rn_vlp, lmbda_masked=-1.0)
