"""Tests of the UAEO loss (compressai_psic.losses.uaeo) against a float64
reference of the paper's terms."""

import math
import re

import numpy as np
import pytest
import torch

from compressai_psic.losses import (
    PSICLoss,
    UAEOLoss,
    adaptive_weights,
    evidential_split,
)
from compressai_psic.losses.transfer import (
    balanced_sum,
)
from compressai_psic.vlp import VLPEnsemble, tiny_vlp

from .helpers import (
    CAPTIONS,
    P3,
    U3,
    V3,
    captions,
    color_images,
    color_vlp,
    model_output,
    noisy_batch,
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


def exactly(message):
    return f"^{re.escape(message)}$"


def unit_rows(rows):
    rows = torch.as_tensor(rows, dtype=torch.float32)
    return rows / rows.norm(dim=1, keepdim=True)


#: Pair 1 is uncertain and its own caption has the least evidence, so that the
#: labels depend on exclude_self.
U_SELF = [[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]]


V_SELF = [[1.0, 0.1, 0.1], [0.2, -1.0, 0.3], [0.1, 0.2, 1.0]]


def _member_losses(members, x_hat, x):
    return [
        UAEOLoss(member)(model_output(x_hat, 3, beta=torch.ones(3)), x, captions(3))[
            "vlp_loss"
        ]
        for member in members
    ]


def test_adaptive_weights_default_eps_and_absent_terms():
    a, b = torch.tensor(1.0), torch.tensor(3.0)
    w = adaptive_weights([a, b], [True, True])
    inverse = torch.tensor([1 / (1 + 1e-4), 1 / (3 + 1e-4)])
    assert torch.allclose(torch.stack(w), inverse / inverse.sum(), rtol=0, atol=1e-7)
    assert [x.item() for x in adaptive_weights([a, b], [False, True])] == [0.0, 1.0]
    assert [x.item() for x in adaptive_weights([a, b], [False, False])] == [0, 0]


def test_uaeo_defaults():
    loss = UAEOLoss(color_vlp(V3))
    assert loss.eps == 1e-4
    assert loss.transform is None
    assert (loss.clean_weight, loss.uncertain_weight) == (10.0, 1.0)


def test_caption_count_messages():
    loss = UAEOLoss(color_vlp(V3))
    x = color_images(U3[:2])  # 2 images of 3 channels: the batch is dimension 0
    output = model_output(x, 2, beta=torch.ones(2))
    for texts, got in ((None, "none"), ("two", "1"), (["0", "1", "2"], "3")):
        with pytest.raises(
            ValueError, match=exactly(f"Expected one caption per image (2), got {got}")
        ):
            loss(output, x, texts)


def test_adaptive_needs_offset_message():
    with pytest.raises(
        ValueError,
        match=exactly(
            "Adaptive weighting needs a non-negative clean term: cosine_offset "
            "must be >= 1, got 0.5"
        ),
    ):
        UAEOLoss(color_vlp(V3), weighting="adaptive", cosine_offset=0.5)


@pytest.mark.parametrize("exclude_self", [True, False])
def test_scale_tau_and_exclude_self_reach_the_split(exclude_self):
    vlp = color_vlp(V_SELF)
    x = color_images(U_SELF)
    loss = UAEOLoss(vlp, logit_scale=3.0, tau=0.7, exclude_self=exclude_self)
    out = loss(model_output(color_images(P3), 3, beta=torch.ones(3)), x, captions(3))
    u, v = vlp.encode_image(x), vlp.encode_text(captions(3))
    expected = evidential_split(u, v, 3.0, 0.7, exclude_self=exclude_self)
    split = out["split"][0]
    for key in ("alpha_i2t", "alpha_t2i", "normalized_evidence"):
        assert torch.allclose(split[key], expected[key]), key
    for key in ("clean", "image_labels", "text_labels"):
        assert torch.equal(split[key], expected[key]), key
    assert split["image_labels"][1].item() == (0 if exclude_self else 1)


def test_the_transform_is_what_the_vlp_sees():
    vlp = color_vlp(V3)
    x = color_images(U3)
    x_hat = color_images(P3)
    flip = lambda images: images.flip(1)  # noqa: E731
    with_transform = UAEOLoss(vlp, transform=flip)
    assert with_transform.transform is flip
    out = with_transform(model_output(x_hat, 3, beta=torch.ones(3)), x, captions(3))
    plain = UAEOLoss(vlp)(
        model_output(flip(x_hat), 3, beta=torch.ones(3)), x, captions(3)
    )
    differs = UAEOLoss(vlp)(model_output(x_hat, 3, beta=torch.ones(3)), x, captions(3))
    assert out["vlp_loss"].item() == pytest.approx(plain["vlp_loss"].item())
    assert out["vlp_loss"].item() != pytest.approx(differs["vlp_loss"].item())


def test_eps_reaches_the_adaptive_weights():
    vlp = color_vlp(V3)
    x = color_images(U3)
    output = model_output(color_images(P3), 3, beta=torch.ones(3))
    out = UAEOLoss(vlp, weighting="adaptive", eps=0.5)(output, x, captions(3))
    assert out["num_clean"] and out["num_uncertain"]
    expected = adaptive_weights(
        [out["clean_loss"], out["uncertain_loss"]], [True, True], eps=0.5
    )
    assert out["clean_weight"].item() == pytest.approx(expected[0].item())
    assert out["uncertain_weight"].item() == pytest.approx(expected[1].item())


def test_cosines_are_per_pair_means():
    # 2 pairs of 3-dimensional embeddings: a mean over the wrong axis differs.
    vlp = color_vlp(V3[:2])
    x = color_images(U3[:2])
    x_hat = color_images(P3[:2])
    out = UAEOLoss(vlp)(model_output(x_hat, 2, beta=torch.ones(2)), x, captions(2))
    u, p, v = unit_rows(U3[:2]), unit_rows(P3[:2]), unit_rows(V3[:2])
    assert out["original_cosine"].item() == pytest.approx((u * v).sum(1).mean().item())
    assert out["protected_cosine"].item() == pytest.approx((p * v).sum(1).mean().item())


def test_an_empty_batch_has_every_entry_of_a_full_one():
    vlp = color_vlp(V3)
    x = color_images(U3)
    loss = UAEOLoss(vlp)
    full = loss(model_output(x, 3, beta=torch.ones(3)), x, captions(3))
    x_hat = x.clone().requires_grad_(True)
    empty = loss(model_output(x_hat, 3, beta=torch.zeros(3)), x, captions(3))
    assert set(empty) == set(full)
    assert set(empty["split"][0]) == set(full["split"][0])
    for key, value in empty.items():
        if key == "split":
            continue
        assert float(torch.as_tensor(value).detach()) == 0, key
    assert empty["vlp_loss"].requires_grad
    split = empty["split"][0]
    assert split["clean"].dtype == torch.bool and split["clean"].shape == (0,)
    for key in ("image_labels", "text_labels", "index"):
        assert split[key].dtype == torch.long and split[key].shape == (0,), key
    for key in ("alpha_i2t", "alpha_t2i", "normalized_evidence"):
        assert split[key].shape == (0, 0), key


@pytest.mark.parametrize("ensemble", ["mean", "balanced"])
def test_ensembles_combine_members_with_their_weights(ensemble):
    members = [color_vlp(V3), color_vlp(U3)]
    weights = [0.75, 0.25]
    x = color_images(U3)
    x_hat = color_images(P3).requires_grad_(True)
    loss = UAEOLoss(VLPEnsemble(members, weights), ensemble=ensemble)
    out = loss(model_output(x_hat, 3, beta=torch.ones(3)), x, captions(3))
    (grad,) = torch.autograd.grad(out["vlp_loss"], x_hat)

    reference = x_hat.detach().clone().requires_grad_(True)
    parts = _member_losses(members, reference, x)
    combined = (
        balanced_sum(parts, weights)
        if ensemble == "balanced"
        else sum(w * part for w, part in zip(weights, parts))
    )
    (expected,) = torch.autograd.grad(combined, reference)
    assert out["vlp_loss"].item() == pytest.approx(combined.item(), rel=1e-5)
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-7)
    # The two modes have the same value and different gradients here.
    other = "mean" if ensemble == "balanced" else "balanced"
    x2 = x_hat.detach().clone().requires_grad_(True)
    out2 = UAEOLoss(VLPEnsemble(members, weights), ensemble=other)(
        model_output(x2, 3, beta=torch.ones(3)), x, captions(3)
    )
    (grad2,) = torch.autograd.grad(out2["vlp_loss"], x2)
    assert out2["vlp_loss"].item() == pytest.approx(out["vlp_loss"].item(), rel=1e-5)
    assert not torch.allclose(grad, grad2, rtol=1e-3)


def test_uaeo_balanced_same_value_different_gradients():
    ensemble = VLPEnsemble([tiny_vlp(seed=0), tiny_vlp(seed=1)])
    target, _, protected = noisy_batch(3)
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
