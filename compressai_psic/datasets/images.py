r"""Images without captions, for rate–distortion-only training."""

from __future__ import annotations

import os
from typing import List, Tuple, Union

from PIL import Image

from .base import CaptionDataset, PathLike, load_rgb_image

__all__ = ["RateDistortionImages"]


class RateDistortionImages(CaptionDataset):
    """CompressAI's :class:`~compressai.datasets.ImageFolder` layout
    (``root/<split>/*``) for rate–distortion-only training.

    Samples are ``(image, "")``: the empty caption tells the trainer that no
    caption exists, and the error handling is that of :class:`CaptionDataset`.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        patch_size: Union[int, Tuple[int, int], None] = 256,
        mode: str = "random_crop",
        **kwargs,
    ):
        from compressai.datasets import ImageFolder

        kwargs.setdefault("caption_mode", "first")
        super().__init__(patch_size=patch_size, mode=mode, **kwargs)
        if not os.path.isdir(root):
            raise ValueError(f"dataset folder not found: {root}")
        if not os.path.isdir(os.path.join(root, split)):
            raise ValueError(
                f"{root} has no '{split}' folder: the imagefolder format is "
                f"CompressAI's layout, {root}/train/*.png and {root}/test/*.png; "
                "move a flat folder's images into train/ and test/ subfolders"
            )
        # ImageFolder lists the files the same way CompressAI's own training does.
        folder = ImageFolder(os.fspath(root), split=split)
        self.images: List[str] = [os.fspath(p) for p in folder.samples]

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        return load_rgb_image(self.images[index])

    def image_captions_at(self, index: int) -> List[str]:
        return [""]
