"""Fixtures of the dataset tests."""

from __future__ import annotations

import pytest

from .helpers import CAPTIONS_TXT, save_image


@pytest.fixture
def flickr_root(tmp_path):
    """A flickr8k folder of three images and their captions.txt."""
    (tmp_path / "Images").mkdir()
    arrays = {
        name: save_image(tmp_path / "Images" / name, value=i)
        for i, name in enumerate(["a.png", "b.png", "c.png"])
    }
    (tmp_path / "captions.txt").write_text(CAPTIONS_TXT)
    return tmp_path, arrays
