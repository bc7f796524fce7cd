"""Tests of the zoo entry points: seeded random weights, missing published ones."""

from __future__ import annotations

import pytest
import torch

from compressai_psic import zoo


def test_seeded_random_weights_ignore_the_callers_random_state():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = zoo.build_zoo_model("bmshj2018-factorized", 1, seed=7, N=8, M=12)
    assert torch.equal(torch.random.get_rng_state(), before)  # left untouched
    torch.manual_seed(456)
    b = zoo.build_zoo_model("bmshj2018-factorized", 1, seed=7, N=8, M=12)
    c = zoo.build_zoo_model("bmshj2018-factorized", 1, seed=8, N=8, M=12)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert not all(
        torch.equal(value, c.state_dict()[name])
        for name, value in a.state_dict().items()
    )


def test_published_weights_come_from_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    with pytest.raises(zoo.NoPublishedWeightsError, match="mbt2018"):
        zoo.build_zoo_model("mbt2018", 2, progress=False)
