"""Helpers of the dataset tests: small images, a captions file, ways to break
an image."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ["CAPTIONS_TXT", "break_image", "save_image"]


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
