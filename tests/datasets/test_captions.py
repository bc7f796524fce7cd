"""Tests of compressai_psic.datasets.captions: the flickr8k captions file and
folder, splits, and lists of image and caption pairs."""

from __future__ import annotations

import os

import pytest
import torch
from torchvision.transforms.functional import to_tensor

from compressai_psic.datasets import (
    CaptionListDataset,
    DatasetSampleError,
    Flickr8kCaptions,
    read_captions_file,
)

from .helpers import CAPTIONS_TXT, save_image


def test_captions_file_with_commas_and_quotes(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text(CAPTIONS_TXT)
    assert read_captions_file(path) == {
        "a.png": ["A dog runs .", "A dog, brown, runs on grass ."],
        "b.png": ['She said "hello" to the cat .', "A cat sits, looking up ."],
        "c.png": ["A bird ."],
    }


@pytest.mark.parametrize(
    "text, match",
    [
        ("a.png,A dog .\n", "line 1: expected a header"),
        ("image,caption\na.png,A dog .\nb.png\n", "line 3: expected 2 fields"),
        ("image,caption\na.png,\n", "line 2: empty caption"),
        ("caption,image\nA dog, brown,a.png\n", "line 2: expected 2 fields"),
        ("", "empty file"),
    ],
)
def test_malformed_captions_file_names_the_line(tmp_path, text, match):
    path = tmp_path / "captions.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_captions_file(path)


def test_flickr8k_folder(flickr_root):
    root, arrays = flickr_root
    data = Flickr8kCaptions(root, caption_mode="first")
    assert len(data) == 3
    assert data.images == [
        str(root / "Images" / n) for n in ("a.png", "b.png", "c.png")
    ]
    assert data.captions[1] == [
        'She said "hello" to the cat .',
        "A cat sits, looking up .",
    ]
    assert data.image_captions[str(root / "Images" / "c.png")] == ["A bird ."]
    image, caption = data[0]
    assert caption == "A dog runs ."
    assert torch.equal(image, to_tensor(arrays["a.png"]))

    data_all = Flickr8kCaptions(root, caption_mode="all")
    assert data_all[1][1] == data.captions[1]

    torch.manual_seed(0)
    data_random = Flickr8kCaptions(root, caption_mode="random")
    drawn = {data_random[0][1] for _ in range(30)}
    assert drawn == set(data.captions[0])


def test_flickr8k_images_next_to_captions_and_splits(tmp_path):
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        save_image(tmp_path / name, value=i)
    (tmp_path / "captions.txt").write_text(CAPTIONS_TXT)
    (tmp_path / "test.txt").write_text("c.png\n\na.png\n")
    by_name = Flickr8kCaptions(tmp_path, split="test")
    by_path = Flickr8kCaptions(tmp_path, split=tmp_path / "test.txt")
    by_list = Flickr8kCaptions(tmp_path, split=["c.png", "a.png"])
    for data in (by_name, by_path, by_list):
        assert data.image_names == ["c.png", "a.png"]
        assert data.images[0] == str(tmp_path / "c.png")
    with pytest.raises(ValueError, match="no caption"):
        Flickr8kCaptions(tmp_path, split=["a.png", "zzz.png"])
    with pytest.raises(FileNotFoundError, match="Split list not found"):
        Flickr8kCaptions(tmp_path, split="val")


def test_caption_list_dataset(tmp_path):
    (tmp_path / "shard").mkdir()
    stems = ["shard/000", "shard/001", "shard/002"]
    for i, stem in enumerate(stems):
        save_image(tmp_path / f"{stem}{'.png' if i == 1 else '.jpg'}", value=i)
        (tmp_path / f"{stem}.txt").write_text(f"caption {i}, with a comma\n")
    (tmp_path / "list.txt").write_text(
        "# pairs\nshard/000\nshard/001.png\n\nshard/002\n"
    )
    data = CaptionListDataset(
        tmp_path / "list.txt", patch_size=16, caption_mode="first"
    )
    assert len(data) == 3
    assert data.images[1] == str(tmp_path / "shard" / "001.png")
    assert data.captions == [[f"caption {i}, with a comma"] for i in range(3)]
    image, caption = data[2]
    assert image.shape == (3, 16, 16) and caption == "caption 2, with a comma"

    os.remove(tmp_path / "shard" / "001.txt")
    with pytest.raises(DatasetSampleError, match="001.txt"):
        data[1]
    skipping = CaptionListDataset(tmp_path / "list.txt", patch_size=16, on_error="skip")
    with pytest.warns(UserWarning, match="001.txt"):
        assert skipping[1][1] == "caption 2, with a comma"
    assert skipping.skipped_paths == [str(tmp_path / "shard" / "001.txt")]
