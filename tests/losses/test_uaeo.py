"""Tests of the UAEO loss (compressai_psic.losses.uaeo) against a float64
reference of the paper's terms."""

import math

import numpy as np
import pytest
import torch

from compressai_psic.losses import (
    PSICLoss,
    UAEOLoss,
    adaptive_weights,
    evidential_split,
)
from compressai_psic.vlp import VLPEnsemble

from .helpers import (
    P3,
    U3,
    V3,
    captions,
    color_images,
    color_vlp,
    model_output,
    reference_uaeo,
)

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
        PSICLoss(vlp)(model_output([color_images(P3)] * 2, 3), color_images(U3), None)
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


def test_soft_labels_of_uncertain_pairs_with_distinct_labels():
    # Random embeddings whose four uncertain pairs all get different labels: a
    # mutation that shares one label, uses argmax, or keeps i itself fails here.
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    split = evidential_split(u, v)
    un = torch.nn.functional.normalize(u.double(), dim=-1)
    vn = torch.nn.functional.normalize(v.double(), dim=-1)
    s = (1 / 0.07) * un @ vn.t()
    evidence = torch.exp(torch.tanh(0.5 * (s + s.t())) / 0.1)
    joint = evidence + evidence.t()
    clean = (joint / joint.sum(1, keepdim=True)).argmax(1) == torch.arange(6)
    alpha = (evidence + 1).masked_fill(torch.eye(6, dtype=torch.bool), math.inf)
    expected = alpha.argmin(1).masked_fill(clean, -1)
    assert split["clean"].tolist() == clean.tolist()
    assert split["image_labels"].tolist() == expected.tolist() == [4, 2, 1, -1, 0, -1]
    uncertain = split["image_labels"][~split["clean"]].tolist()
    assert len(set(uncertain)) == len(uncertain) == 4
