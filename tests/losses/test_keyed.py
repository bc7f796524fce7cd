"""The keyed shift's objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compressai_psic.losses.keyed import KeyedShieldLoss, caption_margin
from compressai_psic.losses.transfer import resnet_features
from compressai_psic.vlp import (
    VLPEnsemble,
    build_demo_clip,
    build_vlp,
    tiny_vlp,
    wrap_demo_clip,
)

from .helpers import RN_CONFIG


def unit(x):
    return F.normalize(x, dim=-1)


def test_the_caption_margin_is_low_once_the_own_caption_trails():
    texts = unit(torch.eye(4, 8))
    matched = caption_margin(texts.clone(), texts)
    swapped = caption_margin(texts.roll(1, 0), texts)
    assert swapped < 0.2 < matched
    assert caption_margin(texts, texts, margin=0.0) < matched
    with pytest.raises(ValueError, match="two or more pairs"):
        caption_margin(texts[:1], texts[:1])
    with pytest.raises(ValueError) as caught:
        caption_margin(texts, texts[:3])
    assert str(caught.value) == (
        "caption_margin needs two or more pairs, got 4 images and 3 captions"
    )


def test_the_keyed_loss_has_every_term_and_trains_the_decodes():
    vlp = build_vlp("tiny:0")
    loss = KeyedShieldLoss(vlp, lambda_diversity=300.0, lambda_attacked=2.0)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    full = x * 0.95
    first = (x + 0.05 * torch.randn(x.shape)).clamp(0, 1).requires_grad_(True)
    second = (x + 0.05 * torch.randn(x.shape)).clamp(0, 1).requires_grad_(True)
    attacked = (x * 0.9).requires_grad_(True)
    captions = ["a red circle", "two blue squares", "a green star"]
    terms = loss([first, second], full, x, captions, [attacked])
    assert set(terms) == {
        "loss",
        "vlp",
        "attacked_vlp",
        "feature",
        "mse",
        "colour",
        "diversity",
    }
    terms["loss"].backward()
    assert first.grad is not None and attacked.grad is not None
    assert terms["attacked_vlp"] > 0 and terms["mse"] > 0
    # One key: no diversity term; no attacked decode: no attacked term.
    alone = loss([first], full, x, captions)
    assert alone["diversity"] == 0 and alone["attacked_vlp"] == 0
    # The covariance counts only changes that agree.
    opposite = loss([full + 0.1, full - 0.1], full, x, captions)
    same = loss([full + 0.1, full + 0.1], full, x, captions)
    assert opposite["diversity"] == 0 and same["diversity"] > 0
    with pytest.raises(ValueError, match="at least one"):
        loss([], full, x, captions)


def test_the_keyed_loss_defaults_are_the_shipped_recipe():
    # train.keyed's defaults and the demo-psic-keyed card's command rely on them.
    loss = KeyedShieldLoss(build_vlp("tiny:0"))
    assert (
        loss.lambda_vlp,
        loss.lambda_feature,
        loss.lambda_mse,
        loss.lambda_colour,
        loss.lambda_diversity,
        loss.margin,
        loss.colour_kernel,
        loss.lambda_attacked,
        loss.transform,
    ) == (1.0, 1.0, 300.0, 3000.0, 300.0, 2.0, 8, 1.0, None)


def test_the_keyed_loss_shows_the_vlp_transformed_decodes():
    seen = []

    class Recording(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape)
            return x

    loss = KeyedShieldLoss(build_vlp("tiny:0"), transform=Recording())
    assert isinstance(loss.transform, Recording)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    loss([x * 0.9], x * 0.95, x, ["a red circle", "a blue square"])
    assert seen
    with pytest.raises(ValueError) as caught:
        loss([], x, x, ["a", "b"])
    assert str(caught.value) == "KeyedShieldLoss needs at least one protected decode"


# -- the terms' values against a float64 reference --


def reference_margin(images, texts, margin):
    """softplus(own − logsumexp(others) + m), both directions, in float64."""
    images, texts = images.double(), texts.double()
    logits = (images @ texts.t()) / 0.07
    batch = logits.size(0)
    to_text, to_image = [], []
    for i in range(batch):
        others = [j for j in range(batch) if j != i]
        row = torch.logsumexp(logits[i, others], 0)
        column = torch.logsumexp(logits[others, i], 0)
        to_text.append(F.softplus(logits[i, i] - row + margin))
        to_image.append(F.softplus(logits[i, i] - column + margin))
    return (sum(to_text) / batch + sum(to_image) / batch) / 2


def test_the_caption_margin_is_the_mean_of_both_directions():
    g = torch.Generator().manual_seed(3)
    # Not symmetric: image→text and text→image give different values.
    images = unit(torch.randn(3, 8, generator=g))
    texts = unit(torch.randn(3, 8, generator=g))
    for margin in (0.0, 0.7, 2.0):
        got = caption_margin(images, texts, margin)
        assert got.item() == pytest.approx(
            reference_margin(images, texts, margin).item(), rel=1e-5
        )
    assert caption_margin(images, texts).item() == pytest.approx(
        reference_margin(images, texts, 2.0).item(), rel=1e-5
    )
    # Two pairs are enough.
    assert caption_margin(images[:2], texts[:2]).item() == pytest.approx(
        reference_margin(images[:2], texts[:2], 2.0).item(), rel=1e-5
    )


def test_the_caption_margin_stays_on_the_embeddings_device():
    # The meta device stands in for a GPU: nothing may be made on the CPU.
    embeddings = torch.randn(3, 8, device="meta")
    assert caption_margin(embeddings, embeddings).device.type == "meta"


class _Flip(torch.nn.Module):
    """A transform that changes what the VLP sees."""

    def forward(self, x):
        return x.flip(-1) * 0.8 + 0.1


def test_every_term_of_the_keyed_loss_has_its_value_and_weight():
    rn = wrap_demo_clip(build_demo_clip(RN_CONFIG, seed=0).eval(), name="rn")
    vlp = VLPEnsemble([rn, tiny_vlp(seed=1)], weights=[1.0, 3.0])
    lambdas = dict(
        lambda_vlp=1.5,
        lambda_feature=0.7,
        lambda_mse=11.0,
        lambda_colour=13.0,
        lambda_diversity=17.0,
        lambda_attacked=2.5,
    )
    loss = KeyedShieldLoss(
        vlp, margin=1.3, colour_kernel=4, transform=_Flip(), **lambdas
    )
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 32, 32, generator=g)
    full = (x * 0.9 + 0.05).detach()
    change = 0.05 * torch.randn(x.shape, generator=g)
    # Per image, the second change agrees, opposes and half-agrees with the first.
    sign = torch.tensor([1.0, -1.0, 0.5]).view(3, 1, 1, 1)
    protected = [full + change, full + sign * change, full + change.roll(1, -1)]
    protected = [p.requires_grad_() for p in protected]
    attacked = [(x * 0.7).requires_grad_(), x.flip(-2).requires_grad_()]
    captions = ["a red circle", "two blue squares", "a green star"]
    terms = loss(protected, full, x, captions, attacked)

    def margins(decodes):
        values = []
        for member in vlp.members:
            texts = member.encode_text(captions)
            per_decode = [
                reference_margin(member.encode_image(_Flip()(d)), texts, 1.3)
                for d in decodes
            ]
            values.append(sum(per_decode) / len(decodes))
        return 0.25 * values[0] + 0.75 * values[1]

    stacked = torch.cat(protected)
    features = resnet_features(rn, stacked, "layer3").flatten(1)
    reference = resnet_features(rn, x.repeat(3, 1, 1, 1), "layer3").flatten(1)
    first, second = protected[0] - full, protected[1] - full
    covariance = (first * second).flatten(1).mean(1).detach()
    expected = {
        "vlp": margins(protected),
        "attacked_vlp": margins(attacked),
        "feature": (1 + F.cosine_similarity(features, reference, dim=1)).mean(),
        "mse": ((stacked - x.repeat(3, 1, 1, 1)) ** 2).mean(),
        "colour": (
            (F.avg_pool2d(stacked, 4) - F.avg_pool2d(full.repeat(3, 1, 1, 1), 4)) ** 2
        ).mean(),
        "diversity": covariance.clamp_min(0).mean(),
    }
    expected["loss"] = (
        1.5 * expected["vlp"]
        + 1.5 * 2.5 * expected["attacked_vlp"]
        + 0.7 * expected["feature"]
        + 11.0 * expected["mse"]
        + 13.0 * expected["colour"]
        + 17.0 * expected["diversity"]
    )
    assert covariance.min() < 0 < covariance.max()  # the clamp is per image
    for name, value in expected.items():
        got = terms[name].detach().item()
        assert got == pytest.approx(value.detach().item(), rel=1e-4), name
        assert terms[name].requires_grad == (name == "loss"), name

    terms["loss"].backward()
    assert all(d.grad is not None for d in protected + attacked)
    # lambda_attacked = 0: attacked decodes are not even looked at.
    off = KeyedShieldLoss(vlp, lambda_attacked=0.0)
    assert off(protected, full, x, captions, attacked)["attacked_vlp"] == 0


def test_descending_the_keyed_loss_descends_the_caption_margin():
    # Only the VLP term, one member: the loss's gradient is the margin's.
    vlp = tiny_vlp(seed=2)
    loss = KeyedShieldLoss(
        vlp, lambda_feature=0, lambda_mse=0, lambda_colour=0, lambda_diversity=0
    )
    g = torch.Generator().manual_seed(5)
    decodes = [torch.rand(3, 3, 32, 32, generator=g).requires_grad_() for _ in "ab"]
    captions = ["a red circle", "two blue squares", "a green star"]
    full = torch.rand(3, 3, 32, 32, generator=g)
    loss(decodes, full, full, captions)["loss"].backward()
    texts = vlp.encode_text(captions)
    margin = sum(reference_margin(vlp.encode_image(d), texts, 2.0) for d in decodes)
    expected = torch.autograd.grad(margin / 2, decodes)
    for got, want in zip((d.grad for d in decodes), expected):
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-9)
