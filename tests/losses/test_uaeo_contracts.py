"""UAEOLoss and adaptive_weights in detail: messages, defaults, the options
reaching the evidential split, transforms, empty batches and ensembles."""

import re

import pytest
import torch

from compressai_psic.losses import UAEOLoss
from compressai_psic.losses.transfer import balanced_sum
from compressai_psic.losses.uaeo import adaptive_weights, evidential_split
from compressai_psic.vlp import VLPEnsemble

from .helpers import P3, U3, V3, captions, color_images, color_vlp, model_output


def exactly(message):
    return f"^{re.escape(message)}$"


def unit_rows(rows):
    rows = torch.as_tensor(rows, dtype=torch.float32)
    return rows / rows.norm(dim=1, keepdim=True)


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


#: Pair 1 is uncertain and its own caption has the least evidence, so that the
#: labels depend on exclude_self.
U_SELF = [[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]]
V_SELF = [[1.0, 0.1, 0.1], [0.2, -1.0, 0.3], [0.1, 0.2, 1.0]]


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


def _member_losses(members, x_hat, x):
    return [
        UAEOLoss(member)(model_output(x_hat, 3, beta=torch.ones(3)), x, captions(3))[
            "vlp_loss"
        ]
        for member in members
    ]


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
