"""Fixtures shared by the core's tests."""

from __future__ import annotations

import pytest


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
