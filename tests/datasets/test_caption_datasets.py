import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.functional import to_tensor

from compressai_psic.datasets import (
    CaptionListDataset,
    DatasetImageError,
    DatasetSampleError,
    Flickr8kCaptions,
    RateDistortionImages,
    SceneCaptions,
    collate_captions,
    image_transform,
    load_rgb_image,
    read_captions_file,
    scenes,
)


def save_image(path, size=(24, 20), value=0):
    rng = np.random.default_rng(value)
    array = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


CAPTIONS_TXT = (
    "image,caption\n"
    "a.png,A dog runs .\n"
    'a.png,"A dog, brown, runs on grass ."\n'
    'b.png,"She said ""hello"" to the cat ."\n'
    "b.png,A cat sits, looking up .\n"
    "\n"
    "c.png,A bird .\n"
)


@pytest.fixture
def flickr_root(tmp_path):
    (tmp_path / "Images").mkdir()
    arrays = {
        name: save_image(tmp_path / "Images" / name, value=i)
        for i, name in enumerate(["a.png", "b.png", "c.png"])
    }
    (tmp_path / "captions.txt").write_text(CAPTIONS_TXT)
    return tmp_path, arrays


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


def break_image(path, how):
    if how == "missing":
        os.remove(path)
    elif how == "garbage":
        path.write_bytes(b"this is not an image" * 10)
    elif how == "truncated":
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(path, quality=95)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "directory":
        os.remove(path)
        path.mkdir()
    elif how == "fifo":
        os.remove(path)
        os.mkfifo(path)


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
        for path in (small, large):
            assert transform(Image.open(path).convert("RGB")).shape == (3, 32, 32)
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


def test_scene_captions_match_written_folder(tmp_path):
    live = SceneCaptions("test", 5, seed=1, image_size=32, captions_per_image=2)
    samples = scenes.split_samples("test", 5, seed=1, captions_per_image=2)
    assert live.captions == [list(s.captions) for s in samples]
    scenes.write_split(tmp_path, "test", 5, seed=1, image_size=32, captions_per_image=2)
    written = Flickr8kCaptions(tmp_path, split="test", caption_mode="all")
    assert written.captions == live.captions
    for i in range(5):
        assert torch.equal(written[i][0], live[i][0])
        assert torch.equal(
            live[i][0], to_tensor(scenes.render_scene(samples[i].spec, 32))
        )
    cached = SceneCaptions("test", 2, seed=1, image_size=32, cache=True)
    assert cached.load_image(0) is cached.load_image(0)
    batch = next(iter(DataLoader(live, batch_size=5, collate_fn=collate_captions)))
    assert batch[0].shape == (5, 3, 32, 32) and len(batch[1]) == 5
