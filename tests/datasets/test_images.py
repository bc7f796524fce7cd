"""Tests of compressai_psic.datasets.images: the image folders of rate-distortion
training (CompressAI's train/test layout)."""

from __future__ import annotations

import pytest

from compressai_psic.datasets import (
    DatasetImageError,
    RateDistortionImages,
)

from .helpers import save_image


def test_rate_distortion_images(tmp_path):
    (tmp_path / "train").mkdir()
    save_image(tmp_path / "train" / "x.png", size=(40, 30))
    (tmp_path / "train" / "y.png").write_bytes(b"nope")
    data = RateDistortionImages(tmp_path, split="train", patch_size=16)
    image, caption = data[0]
    assert image.shape == (3, 16, 16) and caption == ""
    with pytest.raises(DatasetImageError, match="y.png"):
        data[1]
    with pytest.raises(ValueError, match="has no .test. folder"):
        RateDistortionImages(tmp_path, split="test")
