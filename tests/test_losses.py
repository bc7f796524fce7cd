import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from compressai.losses import RateDistortionLoss
from compressai.registry import CRITERIONS
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_msssim import ms_ssim

from compressai_psic.losses import (
    DualPathRateDistortionLoss,
    PSICLoss,
    UAEOLoss,
    adaptive_weights,
    common_difference,
    decoded_paths,
    evidential_split,
    low_frequency_mse,
    semantic_drift,
)
from compressai_psic.vlp import VLPAdapter, VLPEnsemble, tiny_vlp

S = 1 / 0.07
TAU = 0.1


# -- a VLP with hand-picked embeddings --


class _MeanColorModel(nn.Module):
    """Image embedding = mean colour; caption "k" embeds as row k of a table."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def encode_image(self, pixels):
        return pixels.mean(dim=(2, 3))

    def encode_text(self, tokens):
        return self.table[tokens[:, 0]]


def color_vlp(table, image_size=4):
    def tokenize(texts):
        return torch.tensor([[int(t)] for t in texts])

    return VLPAdapter(
        _MeanColorModel(table),
        tokenize,
        image_size=image_size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        name="color",
    )


def color_images(colors, size=4):
    colors = torch.as_tensor(colors, dtype=torch.float32)
    return colors[:, :, None, None].expand(-1, -1, size, size).contiguous()


def captions(n):
    return [str(i) for i in range(n)]


def _unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def reference_uaeo(u, v, p, s=S, tau=TAU, offset=1.0):
    """Loop-by-loop float64 version of the paper's UAEO terms (labels skip self)."""
    u, v, p = _unit(u), _unit(v), _unit(p)
    n = len(u)
    sim = s * u @ v.T
    rel = 0.5 * (sim + sim.T)
    evidence = np.exp(np.tanh(rel) / tau)
    a_i2t, a_t2i = evidence + 1, evidence.T + 1
    joint = evidence + evidence.T
    norm = joint / joint.sum(axis=1, keepdims=True)
    clean = [int(np.argmax(norm[i])) == i for i in range(n)]
    img_lab, txt_lab = [-1] * n, [-1] * n
    for i in range(n):
        if not clean[i]:
            others = [j for j in range(n) if j != i]
            img_lab[i] = min(others, key=lambda j: a_i2t[i, j])
            txt_lab[i] = min(others, key=lambda j: a_t2i[i, j])
    cos = [float(p[i] @ v[i]) for i in range(n)]
    clean_terms = [offset + cos[i] for i in range(n) if clean[i]]
    i2t, t2i = [], []
    for i in range(n):
        if clean[i]:
            continue
        logits = s * p[i] @ v.T
        i2t.append(-logits[img_lab[i]] + np.log(np.exp(logits).sum()))
        logits = s * v[i] @ p.T
        t2i.append(-logits[txt_lab[i]] + np.log(np.exp(logits).sum()))
    mean = lambda xs: float(np.mean(xs)) if xs else 0.0  # noqa: E731
    return {
        "alpha_i2t": a_i2t,
        "alpha_t2i": a_t2i,
        "normalized_evidence": norm,
        "clean": clean,
        "image_labels": img_lab,
        "text_labels": txt_lab,
        "clean_loss": mean(clean_terms),
        "i2t_loss": mean(i2t),
        "t2i_loss": mean(t2i),
    }


# 3 pairs: pair 0 matches; captions 1 and 2 are closer to the other image.
U3 = [[1.0, 0.05, 0.1], [0.1, 1.0, 0.2], [0.05, 0.1, 1.0]]
V3 = [[0.9, 0.1, 0.2], [0.1, 0.3, 0.8], [0.2, 0.7, 0.3]]
P3 = [[0.3, 0.6, 0.5], [0.7, 0.2, 0.4], [0.2, 0.5, 0.9]]


# -- evidential split --


def test_evidential_split_matches_hand_computation():
    split = evidential_split(torch.tensor(U3), torch.tensor(V3))
    ref = reference_uaeo(U3, V3, P3)
    # Worked by hand: image 1 is closest to caption 2 and image 2 to caption 1.
    assert split["clean"].tolist() == [True, False, False]
    assert split["clean"].tolist() == ref["clean"]
    # The least-evidence other candidate of pair 1 is 0 and of pair 2 is 0.
    assert split["image_labels"].tolist() == [-1, 0, 0] == ref["image_labels"]
    assert split["text_labels"].tolist() == ref["text_labels"]
    for key in ("alpha_i2t", "alpha_t2i", "normalized_evidence"):
        np.testing.assert_allclose(split[key].numpy(), ref[key], rtol=1e-5)
    np.testing.assert_allclose(split["normalized_evidence"].sum(1).numpy(), 1, 1e-6)


def test_evidential_split_all_clean_and_all_uncertain():
    eye = torch.eye(3)
    split = evidential_split(eye, eye)
    assert split["clean"].all()
    assert (split["image_labels"] == -1).all() and (split["text_labels"] == -1).all()

    # Captions swapped: both pairs uncertain, each labelled with the other index.
    split = evidential_split(torch.eye(2), torch.eye(2).flip(0))
    assert not split["clean"].any()
    assert split["image_labels"].tolist() == [1, 0]
    assert split["text_labels"].tolist() == [1, 0]


def test_evidential_split_self_label_option():
    # Pair 1 is uncertain and its own caption has the least evidence: only
    # exclude_self=False may pick it.
    u = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    with_self = evidential_split(u, v, exclude_self=False)
    without = evidential_split(u, v)
    assert not with_self["clean"][1]
    assert with_self["image_labels"][1] == 1
    assert without["image_labels"][1] != 1


def test_evidential_split_batch_of_one_is_clean():
    split = evidential_split(torch.randn(1, 5), torch.randn(1, 5))
    assert split["clean"].tolist() == [True]
    assert torch.isfinite(split["alpha_i2t"]).all()


# -- UAEO terms --


@pytest.mark.parametrize("weighting", ["fixed", "adaptive"])
def test_uaeo_terms_match_reference(weighting):
    vlp = color_vlp(V3)
    target = color_images(U3)
    protected = color_images(P3).requires_grad_(True)
    loss = UAEOLoss(vlp, weighting=weighting, eps=0.0)
    out = loss(protected, target, captions(3))
    ref = reference_uaeo(U3, V3, P3)
    for key in ("clean_loss", "i2t_loss", "t2i_loss"):
        assert out[key].item() == pytest.approx(ref[key], rel=1e-5), key
    unc = 0.5 * (ref["i2t_loss"] + ref["t2i_loss"])
    assert out["uncertain_loss"].item() == pytest.approx(unc, rel=1e-5)
    if weighting == "fixed":
        expected = 10 * ref["clean_loss"] + unc
    else:
        w_c = (1 / ref["clean_loss"]) / (1 / ref["clean_loss"] + 1 / unc)
        assert out["clean_weight"].item() == pytest.approx(w_c, rel=1e-5)
        expected = w_c * ref["clean_loss"] + (1 - w_c) * unc
    assert out["vlp_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["num_clean"] == 1 and out["num_uncertain"] == 2
    split = out["split"][0]
    assert split["index"].tolist() == [0, 1, 2]
    assert split["image_labels"].tolist() == ref["image_labels"]

    out["vlp_loss"].backward()
    assert protected.grad is not None and protected.grad.abs().sum() > 0
    assert vlp.model.table.grad is None and not vlp.model.table.requires_grad


def test_uaeo_raw_cosine_option_and_its_guard():
    vlp = color_vlp(V3)
    loss = UAEOLoss(vlp, cosine_offset=0.0)
    out = loss(color_images(P3), color_images(U3), captions(3))
    ref = reference_uaeo(U3, V3, P3, offset=0.0)
    assert out["clean_loss"].item() == pytest.approx(ref["clean_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="one caption per image"):
        loss(color_images(P3), color_images(U3), "012")
    with pytest.raises(ValueError, match="got none"):
        PSICLoss(vlp)(_output([color_images(P3)] * 2, 3), color_images(U3), None)
    with pytest.raises(ValueError, match="cosine_offset"):
        UAEOLoss(vlp, weighting="adaptive", cosine_offset=0.0)
    with pytest.raises(ValueError, match="fixed"):
        UAEOLoss(vlp, weighting="sometimes")


def test_uaeo_uses_the_protected_subset_as_index_space():
    # Four pairs; samples 1, 2 and 3 are protected. Their split and labels must be
    # those of the 3-pair problem (U3, V3, P3) with indices into that subset.
    table = [[0.0, 0.0, 1.0]] + V3
    vlp = color_vlp(table)
    target = color_images([[0.2, 0.2, 0.9]] + U3)
    x_hat = color_images([[0.5, 0.5, 0.5]] + P3)
    beta = torch.tensor([0, 1, 1, 1])
    out = UAEOLoss(vlp)({"x_hat": x_hat}, target, captions(4), beta=beta)
    ref = reference_uaeo(U3, V3, P3)
    assert out["split"][0]["index"].tolist() == [1, 2, 3]
    assert out["split"][0]["image_labels"].tolist() == ref["image_labels"]
    assert out["i2t_loss"].item() == pytest.approx(ref["i2t_loss"], rel=1e-5)
    assert out["t2i_loss"].item() == pytest.approx(ref["t2i_loss"], rel=1e-5)


def test_uaeo_all_clean_all_uncertain_and_empty():
    vlp = color_vlp(np.eye(3))
    target = color_images(np.eye(3))
    protected = color_images(P3).requires_grad_(True)
    for weighting in ("fixed", "adaptive"):
        out = UAEOLoss(vlp, weighting=weighting)(protected, target, captions(3))
        assert out["num_uncertain"] == 0
        assert out["uncertain_loss"].item() == 0
        ref = reference_uaeo(np.eye(3), np.eye(3), P3)
        weight = 10.0 if weighting == "fixed" else 1.0
        assert out["vlp_loss"].item() == pytest.approx(weight * ref["clean_loss"])

    swapped = color_vlp([[0, 1, 0], [1, 0, 0]])
    out = UAEOLoss(swapped, weighting="adaptive")(
        color_images([[0.2, 0.3, 0.9], [0.6, 0.1, 0.4]]),  # protected
        color_images([[1, 0, 0], [0, 1, 0]]),  # originals: captions swapped
        captions(2),
    )
    assert out["num_clean"] == 0
    assert out["uncertain_weight"].item() == 1.0
    assert out["vlp_loss"].item() == pytest.approx(out["uncertain_loss"].item())

    x_hat = color_images(P3).requires_grad_(True)
    out = UAEOLoss(vlp)({"x_hat": x_hat}, target, captions(3), beta=torch.zeros(3))
    assert out["vlp_loss"].item() == 0
    out["vlp_loss"].backward()  # still attached to the graph
    assert x_hat.grad is not None and x_hat.grad.abs().sum() == 0


def test_uaeo_ensemble_averages_members():
    table_b = [[0.2, 0.9, 0.1], [0.8, 0.1, 0.3], [0.1, 0.2, 0.9]]
    vlp_a, vlp_b = color_vlp(V3), color_vlp(table_b)
    target, protected = color_images(U3), color_images(P3)
    out_a = UAEOLoss(vlp_a)(protected, target, captions(3))
    out_b = UAEOLoss(vlp_b)(protected, target, captions(3))
    both = UAEOLoss(VLPEnsemble([vlp_a, vlp_b], weights=[3, 1]))(
        protected, target, captions(3)
    )
    for key in ("vlp_loss", "clean_loss", "i2t_loss"):
        expected = 0.75 * out_a[key] + 0.25 * out_b[key]
        assert both[key].item() == pytest.approx(expected.item(), rel=1e-6)
    assert len(both["split"]) == 2
    listed = UAEOLoss([vlp_a, vlp_b])(protected, target, captions(3))
    assert listed["vlp_loss"].item() == pytest.approx(
        0.5 * (out_a["vlp_loss"] + out_b["vlp_loss"]).item(), rel=1e-6
    )


def test_adaptive_weights():
    a, b = torch.tensor(0.5, requires_grad=True), torch.tensor(2.0)
    w_a, w_b = adaptive_weights([a, b], [True, True], eps=0.0)
    assert w_a.item() == pytest.approx(0.8) and w_b.item() == pytest.approx(0.2)
    assert not w_a.requires_grad
    w_a, w_b = adaptive_weights([torch.tensor(0.0), b], [False, True])
    assert (w_a.item(), w_b.item()) == (0.0, 1.0)
    # A vanishing term saturates at weight ~1 instead of blowing up.
    w_a, w_b = adaptive_weights([torch.tensor(0.0), b], [True, True], eps=1e-4)
    assert 0.99 < w_a.item() <= 1 and torch.isfinite(w_b)


# -- rate-distortion --


def _output(x_hat, batch=4, seed=0, beta=None):
    """A model output; a list ``x_hat`` is [full, protected] as forward_multi's."""
    g = torch.Generator().manual_seed(seed)
    likelihoods = {
        "y": torch.rand(batch, 8, 4, 4, generator=g) * 0.9 + 0.05,
        "z": torch.rand(batch, 4, 2, 2, generator=g) * 0.9 + 0.05,
    }
    out = {"x_hat": x_hat, "likelihoods": likelihoods}
    if beta is None and isinstance(x_hat, list):
        beta = [torch.zeros(batch), torch.ones(batch)][: len(x_hat)]
    if beta is not None:
        out["beta"] = beta
    return out


def test_rd_single_path_equals_compressai():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 16, 16, generator=g)
    x_hat = torch.rand(4, 3, 16, 16, generator=g)
    output = _output(x_hat)
    ours = DualPathRateDistortionLoss(lmbda_full=0.5, lmbda_protected=0.013)
    theirs = RateDistortionLoss(lmbda=0.013)(output, x)
    out = ours(output, x, beta="protected")
    assert out["bpp_loss"].item() == pytest.approx(theirs["bpp_loss"].item(), 1e-6)
    assert out["loss"].item() == pytest.approx(theirs["loss"].item(), 1e-6)
    assert out["mse_loss_protected"].item() == pytest.approx(theirs["mse_loss"].item())
    assert out["num_full"] == 0 and out["mse_loss_full"].item() == 0


def test_rd_both_paths_formula():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 8, 8, generator=g)
    x_full = torch.rand(3, 3, 8, 8, generator=g)
    x_prot = torch.rand(3, 3, 8, 8, generator=g)
    out = DualPathRateDistortionLoss(0.01, 0.002)(_output([x_full, x_prot], batch=3), x)
    xn = x.numpy().astype(np.float64)
    mse_f = np.mean((x_full.numpy() - xn) ** 2)
    mse_p = np.mean((x_prot.numpy() - xn) ** 2)
    expected = 0.5 * (0.01 * 255**2 * mse_f + 0.002 * 255**2 * mse_p)
    assert out["distortion_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["mse_loss_full"].item() == pytest.approx(mse_f, rel=1e-5)
    assert out["loss"].item() == pytest.approx(
        out["bpp_loss"].item() + expected, rel=1e-5
    )
    # The betas say which reconstruction is which, in any order.
    listed = _output([x_prot, x_full], batch=3, beta=["protected", torch.zeros(3)])
    again = DualPathRateDistortionLoss(0.01, 0.002)(listed, x)
    assert again["loss"].item() == pytest.approx(out["loss"].item())


def test_rd_per_sample_paths():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 8, 8, generator=g)
    x_hat = torch.rand(4, 3, 8, 8, generator=g)
    beta = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = DualPathRateDistortionLoss(0.01, 0.002)(_output(x_hat), x, beta=beta)
    per_image = ((x_hat - x) ** 2).flatten(1).mean(1).numpy()
    lmbda = np.where(beta.numpy() == 1, 0.002, 0.01)
    expected = np.mean(lmbda * 255**2 * per_image)
    assert out["distortion_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["mse_loss_full"].item() == pytest.approx(per_image[1], rel=1e-5)
    assert out["mse_loss_protected"].item() == pytest.approx(
        per_image[[0, 2, 3]].mean(), rel=1e-5
    )
    assert (out["num_full"], out["num_protected"]) == (1, 3)
    # beta may also come with the output.
    with_beta = dict(_output(x_hat), beta=beta)
    again = DualPathRateDistortionLoss(0.01, 0.002)(with_beta, x)
    assert again["loss"].item() == pytest.approx(out["loss"].item())


def test_rd_ms_ssim_on_large_images():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 176, 176, generator=g)
    x_full = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    x_prot = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    loss = DualPathRateDistortionLoss(3.0, 5.0, metric="ms-ssim")
    out = loss(_output([x_full, x_prot], batch=2), x)
    full = ms_ssim(x_full, x, data_range=1.0).item()
    prot = ms_ssim(x_prot, x, data_range=1.0).item()
    assert out["ms_ssim_loss_full"].item() == pytest.approx(full, rel=1e-5)
    assert out["ms_ssim_loss_protected"].item() == pytest.approx(prot, rel=1e-5)
    expected = 0.5 * (3.0 * (1 - full) + 5.0 * (1 - prot))
    assert out["distortion_loss"].item() == pytest.approx(expected, rel=1e-5)
    theirs = RateDistortionLoss(lmbda=5.0, metric="ms-ssim")(_output(x_prot, 2), x)
    ours = loss(_output(x_prot, 2), x, beta="protected")
    assert ours["loss"].item() == pytest.approx(theirs["loss"].item(), rel=1e-5)


def test_rd_errors():
    x = torch.rand(2, 3, 8, 8)
    loss = DualPathRateDistortionLoss()
    with pytest.raises(ValueError, match="beta"):
        loss(_output(x, 2), x)
    with pytest.raises(ValueError, match="0 \\(full\\) or 1 \\(protected\\)"):
        loss(_output(x, 2), x, beta=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="2 images"):
        loss(_output(x, 2), x, beta=torch.ones(3))
    with pytest.raises(ValueError, match="'mse', 'ms-ssim'"):
        DualPathRateDistortionLoss(metric="psnr")
    with pytest.raises(ValueError, match="2 reconstructions for 1 beta sets"):
        decoded_paths({"x_hat": [x, x], "beta": [torch.zeros(2)]}, x)
    with pytest.raises(ValueError, match="'full', 'protected'"):
        decoded_paths({"x_hat": x, "beta": "unlocked"}, x)


def test_criteria_registered():
    assert CRITERIONS["psic-rd"] is DualPathRateDistortionLoss
    assert CRITERIONS["psic-uaeo"] is UAEOLoss
    assert CRITERIONS["psic"] is PSICLoss


# -- total loss --


def test_psic_loss_total_and_stages():
    vlp = color_vlp(V3)
    x = color_images(U3)
    x_hat = [color_images(U3) * 0.9, color_images(P3)]
    out = PSICLoss(vlp, lmbda_vlp=0.5)(_output(x_hat, 3), x, captions(3))
    rd = DualPathRateDistortionLoss()(_output(x_hat, 3), x)
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
        output = _output([x_hat * 0.5, x_hat], batch=n, seed=seed)
    else:
        bits = data.draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))
        beta = torch.tensor(bits, dtype=torch.float32)
        output = _output(x_hat, batch=n, seed=seed)
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
    output = _output([x_full, x_prot], 3)
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
