"""Tests of compressai_psic.datasets.base: reading images, broken files named
or skipped, small images upscaled, transforms and collation."""

from __future__ import annotations

import contextlib
import os
import warnings

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.functional import to_tensor

from compressai_psic.datasets import (
    DatasetImageError,
    DatasetSampleError,
    Flickr8kCaptions,
    collate_captions,
    image_transform,
    load_rgb_image,
)
from compressai_psic.datasets.base import EnsureMinSize

from .helpers import break_image, save_image


def test_small_images_warn_once_that_they_are_upscaled():
    ensure = EnsureMinSize((256, 256))
    small = Image.new("RGB", (128, 96))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ensure(small).size == (342, 256)
        ensure(small)
        ensure(Image.new("RGB", (300, 300)))
    assert len(caught) == 1
    assert "smaller than the 256x256 patch" in str(caught[0].message)
    assert "128x96" in str(caught[0].message)


BREAKAGES = ["missing", "garbage", "truncated", "directory"]
if hasattr(os, "mkfifo"):
    BREAKAGES.append("fifo")  # opening a FIFO would block forever


@pytest.mark.parametrize("how", BREAKAGES)
def test_broken_image_raises_error_naming_file(flickr_root, how):
    root, _ = flickr_root
    path = root / "Images" / "b.png"
    break_image(path, how)
    data = Flickr8kCaptions(root, caption_mode="first")
    assert data[0][1] == "A dog runs ."
    with pytest.raises(DatasetImageError, match=str(path)) as info:
        data[1]
    assert isinstance(info.value, OSError) and info.value.path == str(path)
    assert data.check_files() == [(str(path), str(info.value))]


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_broken_image_is_skipped_and_counted(flickr_root, how):
    root, arrays = flickr_root
    path = root / "Images" / "b.png"
    break_image(path, how)
    data = Flickr8kCaptions(root, caption_mode="first", on_error="skip")
    with pytest.warns(UserWarning, match="b.png"):
        image, caption = data[1]
    # Replaced by the next readable sample, deterministically.
    assert caption == "A bird ."
    assert torch.equal(image, to_tensor(arrays["c.png"]))
    data[1]
    assert data.skipped == 2 and data.skipped_paths == [str(path)]


def test_all_broken_raises_instead_of_looping(flickr_root):
    root, _ = flickr_root
    for name in ("a.png", "b.png", "c.png"):
        (root / "Images" / name).write_bytes(b"broken")
    data = Flickr8kCaptions(root, on_error="skip")
    with (
        pytest.warns(UserWarning),
        pytest.raises(DatasetSampleError, match="3 consecu"),
    ):
        data[0]
    assert data.skipped == 3


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    save_image(path, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetImageError, match="DecompressionBombError"):
        load_rgb_image(path)


def test_worker_error_reaches_the_main_process(flickr_root):
    root, _ = flickr_root
    break_image(root / "Images" / "c.png", "garbage")
    data = Flickr8kCaptions(root, patch_size=16, mode="center_crop")
    loader = DataLoader(data, batch_size=3, num_workers=1, collate_fn=collate_captions)
    with pytest.raises(DatasetImageError, match="c.png"):
        next(iter(loader))


def test_transforms_and_collate(tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    save_image(small, size=(20, 10))
    save_image(large, size=(50, 40))
    for mode in ("random_crop", "center_crop", "resize"):
        transform = image_transform(32, mode)
        # The small image is upscaled for a crop, and the user is told.
        expect = pytest.warns(
            UserWarning, match=r"upscaled to fit \(first one: 20x10\)"
        )
        with expect if mode != "resize" else contextlib.nullcontext():
            for path in (small, large):
                image = Image.open(path).convert("RGB")
                assert transform(image).shape == (3, 32, 32)
    assert image_transform((16, 24), "center_crop")(Image.open(large)).shape == (
        3,
        16,
        24,
    )
    assert image_transform(None)(Image.open(large)).shape == (3, 40, 50)
    with pytest.raises(ValueError, match="allowed: random_crop, center_crop, resize"):
        image_transform(32, "crop")

    images, captions = collate_captions(
        [(torch.zeros(3, 8, 8), "a"), (torch.ones(3, 8, 8), "b")]
    )
    assert images.shape == (2, 3, 8, 8) and captions == ["a", "b"]
    with pytest.raises(ValueError, match="set patch_size"):
        collate_captions([(torch.zeros(3, 8, 8), "a"), (torch.zeros(3, 8, 9), "b")])
