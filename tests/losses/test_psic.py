"""Tests of the total PSIC loss (compressai_psic.losses.psic): stages, optional
terms, finiteness and gradients through a shielded codec."""

import math

import pytest
import torch
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
from compressai_psic.vlp import tiny_vlp

from .helpers import (
    P3,
    U3,
    V3,
    captions,
    color_images,
    color_vlp,
    model_output,
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
