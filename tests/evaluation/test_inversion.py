"""Tests of the adaptive attacker (compressai_psic.evaluation.inversion)."""

import pytest
import torch

from compressai_psic.datasets import SceneCaptions
from compressai_psic.evaluation.attacks import Attack
from compressai_psic.evaluation.inversion import (
    InversionAttack,
    RestorationCNN,
    recovered_share,
    train_inversion,
)
from compressai_psic.zoo import bmshj2018_hyperprior


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return bmshj2018_hyperprior(1, N=16, M=24, trigger_dim=32).eval()


@pytest.fixture(scope="module")
def scenes():
    return SceneCaptions("train", num_samples=3, image_size=32)


@pytest.mark.parametrize("channels, layers", [(8, 2), (16, 4)])
def test_restoration_cnn_starts_as_identity(channels, layers):
    torch.manual_seed(1)
    network = RestorationCNN(channels, layers)
    x = torch.rand(2, 3, 12, 10)
    assert torch.equal(network(x), x)
    convs = [m for m in network.body if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == layers


def test_restoration_cnn_invalid():
    with pytest.raises(ValueError):
        RestorationCNN(8, 1)
    with pytest.raises(ValueError):
        RestorationCNN(0, 3)


def test_train_inversion_budget_and_attack(codec, scenes):
    attack = train_inversion(
        codec,
        scenes,
        num_pairs=2,
        steps=3,
        batch_size=2,
        crop_size=16,
        channels=8,
        layers=3,
        progress=False,
    )
    assert isinstance(attack, InversionAttack) and isinstance(attack, Attack)
    assert attack.name == "inversion" and not attack.needs_fit
    info = attack.info
    assert info["pairs"] == 2 and info["steps"] == 3 and info["crop_size"] == 16
    assert info["target"] == "full" and info["layers"] == 3
    assert info["pair_seconds"] >= 0 and info["train_seconds"] >= 0
    assert info["final_mse"] >= 0
    assert attack.describe()["trained"] == info
    x = torch.rand(2, 3, 32, 40)
    out = attack(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # Trained: no longer the identity.
    assert not torch.allclose(out, x)


def test_train_inversion_time_budget_and_original_target(codec, scenes):
    attack = train_inversion(
        codec,
        scenes,
        num_pairs=10,
        steps=50,
        max_seconds=0.0,
        batch_size=1,
        crop_size=None,
        channels=4,
        layers=2,
        target="original",
        progress=False,
    )
    assert attack.info["steps"] == 1  # stopped after the first step
    assert attack.info["pairs"] == 3  # no more than the dataset holds
    assert attack.info["target"] == "original"


def test_train_inversion_invalid(codec, scenes):
    with pytest.raises(ValueError, match="target"):
        train_inversion(codec, scenes, target="protected", progress=False)
    with pytest.raises(ValueError):
        train_inversion(codec, scenes, steps=0, progress=False)
    with pytest.raises(ValueError):
        train_inversion(codec, scenes, num_pairs=0, progress=False)


def test_recovered_share():
    assert recovered_share(0.8, 0.2, 0.5) == pytest.approx(0.5)
    assert recovered_share(0.8, 0.2, 0.8) == pytest.approx(1.0)
    assert recovered_share(0.8, 0.2, 0.1) == pytest.approx(-1 / 6)
    assert recovered_share(0.5, 0.5, 0.9) is None
    assert recovered_share(0.4, 0.6, 0.9) is None
