"""Fixtures of the ``psic`` command-line tests: no downloads, tiny checkpoints,
a valid ``.psic`` file, the shipped manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressai_psic import zoo

from .helpers import RANDOM, run, write_image


@pytest.fixture(autouse=True)
def no_pretrained_downloads(monkeypatch, tmp_path_factory):
    # Pretrained weights are not available offline: point the manifest and the
    # cache at empty places so that a request fails at once, without network.
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(empty / "manifest.json"))
    monkeypatch.setenv("COMPRESSAI_PSIC_CACHE", str(empty))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Two tiny trained-looking checkpoints whose protected decode differs."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = zoo.bmshj2018_hyperprior(1, N=16, M=24)
        with torch.no_grad():
            for param in model.trigger_parameters():
                param.normal_(0.0, 0.5)
        path = folder / f"tiny{seed}.pth.tar"
        torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
        paths.append(path)
    return paths


@pytest.fixture
def valid_psic(tmp_path) -> Path:
    write_image(tmp_path / "in.png", "RGB", 12, 12)
    assert run("compress", tmp_path / "in.png", "-o", tmp_path / "v.psic", *RANDOM) == 0
    return tmp_path / "v.psic"


@pytest.fixture
def packaged_manifest(monkeypatch):
    """The shipped manifest (the demo codec), instead of the empty test one."""
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(zoo.zoo_dir() / "manifest.json"))
