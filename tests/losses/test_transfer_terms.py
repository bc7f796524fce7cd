"""Tests of the transfer terms inside PSICLoss and of UAEOLoss's balanced
ensemble."""

import pytest
import torch

from compressai_psic.losses import PSICLoss, UAEOLoss
from compressai_psic.losses.transfer import feature_disruption, masked_difference
from compressai_psic.vlp import VLPEnsemble, build_demo_clip, tiny_vlp, wrap_demo_clip

from .helpers import model_output
from .test_transfer import RN_CONFIG

CAPTIONS = ["a red square", "a blue circle", "green grass", "a white wall"]


@pytest.fixture(scope="module")
def rn_vlp():
    return wrap_demo_clip(build_demo_clip(RN_CONFIG, seed=0).eval(), name="rn")


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(4, 3, 32, 32, generator=g)
    full = (target + 0.02 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    protected = (target + 0.1 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    return target, full, protected


def test_psic_reports_feature_and_masked_terms(rn_vlp):
    target, full, protected = batch()
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
    target, full, protected = batch(1)
    output = model_output([full, protected], batch=4)
    one = PSICLoss(rn_vlp, **{key: 1.0})(output, target, CAPTIONS)
    three = PSICLoss(rn_vlp, **{key: 3.0})(output, target, CAPTIONS)
    assert one[term].item() > 0
    assert three[term].item() == pytest.approx(one[term].item(), rel=1e-6)
    assert (three["loss"] - one["loss"]).item() == pytest.approx(
        2 * one[term].item(), rel=1e-4
    )


def test_feature_term_has_gradient(rn_vlp):
    target, full, protected = batch(2)
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


def test_uaeo_balanced_same_value_different_gradients():
    ensemble = VLPEnsemble([tiny_vlp(seed=0), tiny_vlp(seed=1)])
    target, _, protected = batch(3)
    grads, values = {}, {}
    for mode in ("mean", "balanced"):
        x = protected.clone().requires_grad_(True)
        out = UAEOLoss(ensemble, ensemble=mode)(x, target, CAPTIONS)
        out["vlp_loss"].backward()
        values[mode], grads[mode] = out["vlp_loss"].item(), x.grad
    assert values["balanced"] == pytest.approx(values["mean"], rel=1e-5)
    assert grads["mean"].abs().sum() > 0 and grads["balanced"].abs().sum() > 0
    assert not torch.allclose(grads["mean"], grads["balanced"], rtol=1e-3, atol=0)
    # A single VLP: "balanced" changes nothing.
    single = tiny_vlp(seed=0)
    a = UAEOLoss(single, ensemble="balanced")(protected, target, CAPTIONS)
    b = UAEOLoss(single)(protected, target, CAPTIONS)
    assert a["vlp_loss"].item() == pytest.approx(b["vlp_loss"].item())


def test_uaeo_invalid_ensemble():
    with pytest.raises(ValueError, match="ensemble"):
        UAEOLoss(tiny_vlp(seed=0), ensemble="median")
