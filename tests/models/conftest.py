"""Fixtures shared by the core's tests."""

from __future__ import annotations

import pytest
import torch

import compressai_psic as psic

from .helpers import perturb_triggers, tiny_base


@pytest.fixture
def registries():
    """Registrations made by a test are undone after it."""
    from compressai.registry import MODELS

    from compressai_psic.models.registry import ARCHITECTURES

    saved = dict(ARCHITECTURES), dict(MODELS)
    yield
    ARCHITECTURES.clear()
    ARCHITECTURES.update(saved[0])
    MODELS.clear()
    MODELS.update(saved[1])


@pytest.fixture(scope="module")
def hyperprior():
    """A tiny shielded bmshj2018-hyperprior whose triggers change the decode."""
    net = psic.shield(tiny_base("bmshj2018-hyperprior"))
    perturb_triggers(net)
    return net.eval()


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
