r"""The scene benchmark as a caption dataset, rendered on the fly."""

from __future__ import annotations

from typing import Dict, List

from PIL import Image

from ..base import CaptionDataset
from .benchmark import split_samples
from .render import render_scene

__all__ = ["SceneCaptions"]


class SceneCaptions(CaptionDataset):
    """The scene benchmark (:mod:`~compressai_psic.datasets.scenes`), rendered live.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint random streams).
        num_samples: number of scenes.
        seed: benchmark seed.
        image_size: rendered size in pixels (then ``transform`` / ``patch_size``).
        captions_per_image: canonical caption plus rewordings.
        distinct_captions: skip scenes whose canonical caption already occurred,
            so that retrieval has exactly one correct caption per image.
        cache: keep rendered images in memory (for many epochs over a small set).
        **kwargs: see :class:`CaptionDataset`.
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 1000,
        seed: int = 0,
        image_size: int = 64,
        captions_per_image: int = 1,
        distinct_captions: bool = False,
        cache: bool = False,
        supersample: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.samples = split_samples(
            split, num_samples, seed, captions_per_image, distinct_captions
        )
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        self._cache: Dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = render_scene(
            self.samples[index].spec, self.image_size, self.supersample
        )
        if self._cache is not None:
            self._cache[index] = image
        return image

    def image_captions_at(self, index: int) -> List[str]:
        return list(self.samples[index].captions)
