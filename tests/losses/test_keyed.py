"""The keyed shift's objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compressai_psic.losses.keyed import KeyedShieldLoss, caption_margin
from compressai_psic.vlp import build_vlp


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
    with pytest.raises(ValueError, match="two or more pairs"):
        caption_margin(texts, texts[:3])


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
