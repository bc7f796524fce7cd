"""Tests of the per-image bound (compressai_psic.evaluation.bound)."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from compressai_psic.evaluation.bound import (
    BOUND_ATTACKS,
    budget_psnr,
    per_image_bound,
    pgd_perturb,
    plot_bound,
)
from compressai_psic.vlp import tiny_vlp

CAPTIONS = ["a red apple", "a blue car", "a dog on grass", "a snowy hill"]


class TinyDataset:
    """``n`` random 32×32 images with two captions each."""

    def __init__(self, n=4, size=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.captions = [[CAPTIONS[i % 4], f"picture number {i}"] for i in range(n)]

    def __len__(self):
        return len(self.images)

    def load_image(self, i):
        array = self.images[i].mul(255).round().byte().permute(1, 2, 0).numpy()
        return Image.fromarray(array)

    def image_captions_at(self, i):
        return list(self.captions[i])


@pytest.fixture(scope="module")
def surrogate():
    return tiny_vlp(seed=0)


def originals(n=4, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def own_similarity(vlp, images):
    with torch.no_grad():
        u = F.normalize(vlp.encode_image(images), dim=-1)
        v = F.normalize(vlp.encode_text(CAPTIONS[: len(images)]), dim=-1)
    return (u * v).sum(-1)


@pytest.mark.parametrize("budget", [2.0, 8.0])
def test_pgd_linf_budget_and_range(surrogate, budget):
    x = originals()
    out = pgd_perturb(x, CAPTIONS, surrogate, "linf", budget, steps=3)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().max() <= budget / 255 + 1e-6
    assert (out - x).abs().max() > 0.5 * budget / 255  # the budget is used


@pytest.mark.parametrize("budget", [3.0, 10.0])
def test_pgd_l2_budget_and_range(surrogate, budget):
    x = originals()
    out = pgd_perturb(x, CAPTIONS, surrogate, "l2", budget, steps=3)
    assert out.min() >= 0 and out.max() <= 1
    limit = budget / 255 * math.sqrt(x[0].numel())
    norms = (out - x).flatten(1).norm(dim=1)
    assert (norms <= limit * (1 + 1e-5)).all()
    assert (norms > 0.3 * limit).all()


def test_pgd_lowers_own_caption_similarity(surrogate):
    x = originals()
    before = own_similarity(surrogate, x)
    out = pgd_perturb(x, CAPTIONS, surrogate, "linf", 8, steps=5, input_diversity=False)
    after = own_similarity(surrogate, out)
    assert after.mean() < before.mean() - 1e-3
    assert (after < before).sum() >= 3


def test_pgd_deterministic_for_seed(surrogate):
    x = originals()
    a = pgd_perturb(x, CAPTIONS, surrogate, "linf", 4, steps=2, seed=3)
    b = pgd_perturb(x, CAPTIONS, surrogate, "linf", 4, steps=2, seed=3)
    torch.testing.assert_close(a, b)


def test_pgd_invalid(surrogate):
    x = originals()
    with pytest.raises(ValueError):
        pgd_perturb(x, CAPTIONS, surrogate, "l1", 4)
    with pytest.raises(ValueError):
        pgd_perturb(x, CAPTIONS, surrogate, "linf", 0)
    with pytest.raises(ValueError):
        pgd_perturb(x, CAPTIONS, surrogate, "linf", 4, steps=0)
    with pytest.raises(ValueError):
        pgd_perturb(x, CAPTIONS[:3], surrogate, "linf", 4)


def test_budget_psnr():
    assert budget_psnr("linf", 255 / 16) == pytest.approx(24.08, abs=0.01)
    assert budget_psnr("l2", 1.0) == pytest.approx(48.13, abs=0.01)
    assert budget_psnr("linf", 2) == pytest.approx(budget_psnr("linf", 1) - 6.02, 1e-3)
    with pytest.raises(ValueError):
        budget_psnr("l1", 1.0)
    with pytest.raises(ValueError):
        budget_psnr("l2", 0.0)


def test_per_image_bound_report(surrogate, tmp_path):
    eval_vlps = {"tiny": surrogate, "other": tiny_vlp(seed=1)}
    attacks = ["blur1", "median3"]
    report = per_image_bound(
        TinyDataset(),
        surrogate,
        eval_vlps,
        budgets={"linf": [8], "l2": [6]},
        attacks=attacks,
        steps=2,
        batch_size=3,
        progress=False,
    )
    assert report["num_images"] == 4 and report["steps"] == 2
    assert report["attacks"] == attacks
    assert report["surrogate"] == [surrogate.name]
    assert set(report["original"]) == set(eval_vlps)
    assert [(p["norm"], p["budget"]) for p in report["points"]] == [
        ("linf", 8.0),
        ("l2", 6.0),
    ]
    for point in report["points"]:
        assert set(point) >= {"norm", "budget", "psnr", "psnr_attacked", "recall"}
        assert set(point["psnr_attacked"]) == set(attacks)
        assert 25 < point["psnr"] < 60
        for name in eval_vlps:
            variants = point["recall"][name]
            assert set(variants) == {
                "perturbed",
                "perturbed_blur1",
                "perturbed_median3",
            }
            for recall in variants.values():
                assert all(0 <= recall[d] <= 1 for d in ("i2t", "t2i"))
            for d in ("i2t", "t2i"):
                assert point["worst"][name][d] == max(v[d] for v in variants.values())
    # The L2 budget is used in full: PSNR close to its price.
    l2 = report["points"][1]
    assert l2["psnr"] == pytest.approx(budget_psnr("l2", 6), abs=1.5)
    path = plot_bound(
        report,
        str(tmp_path / "bound.png"),
        codecs={"codec": {"psnr": 33.0, "recall": {"tiny": 0.5}, "worst": {"tiny": 1}}},
    )
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_per_image_bound_refuses(surrogate):
    data = TinyDataset(2)
    with pytest.raises(ValueError, match="blind"):
        per_image_bound(data, surrogate, {"t": surrogate}, attacks=["affine_fit"])
    with pytest.raises(ValueError, match="evaluation VLP"):
        per_image_bound(data, surrogate, {}, attacks=["blur1"])
    with pytest.raises(ValueError, match="norm"):
        per_image_bound(data, surrogate, {"t": surrogate}, budgets={"l1": [1]})


def test_bound_attacks_are_blind():
    assert "noisyup" in BOUND_ATTACKS and "down2" not in BOUND_ATTACKS
