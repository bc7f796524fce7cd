"""Fixtures of the training tool's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path, monkeypatch):
    """Each test runs in an empty folder: the default --save-dir (runs/psic) is
    then never a developer's own run, which the tool would refuse to replace."""
    monkeypatch.chdir(tmp_path)
