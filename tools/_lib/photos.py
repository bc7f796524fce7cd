"""Real photographs for the decode-portability tests and tools: crops of the
photos that matplotlib ships as sample data (no download; ImportError without
matplotlib)."""

from __future__ import annotations

from typing import List

import numpy as np
import torch

__all__ = ["PHOTOS", "photo_crops", "resized_photos"]

#: matplotlib's sample photographs (``matplotlib.cbook.get_sample_data``).
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def _load(name: str, size: int) -> np.ndarray:
    """The photo, enlarged (bicubic) when its shorter side is under ``size``."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data(name) as handle, Image.open(handle) as image:
        image = image.convert("RGB")
        factor = size / min(image.size)
        if factor > 1:
            width, height = (int(np.ceil(s * factor)) for s in image.size)
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(image)


def photo_crops(count: int, size: int = 256) -> List[torch.Tensor]:
    """``count`` different ``(1, 3, size, size)`` crops in [0, 1] of the sample
    photos: the photos in turn, the crop moving along each photo's diagonal
    (every other pass mirrored, so that 50 crops are 50 different images)."""
    # Twice the crop at least, so that the crops along the diagonal differ.
    photos = [_load(name, 2 * size) for name in PHOTOS]
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        steps = max(1, count // len(photos))
        position = (index // len(photos)) / max(1, steps - 1) if steps > 1 else 0.5
        top = int(round(position * (height - size)))
        left = int(round(position * (width - size)))
        crop = photo[top : top + size, left : left + size]
        if (index // len(photos)) % 2:
            crop = crop[:, ::-1]
        tensor = torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255
        crops.append(tensor.unsqueeze(0))
    return crops


def resized_photos(height: int, width: int) -> List[torch.Tensor]:
    """The sample photos resized (bicubic) to ``(1, 3, height, width)``."""
    from PIL import Image

    out = []
    for name in PHOTOS:
        image = Image.fromarray(_load(name, 1)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        array = np.asarray(image, dtype=np.float32) / 255
        out.append(torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0))
    return out
