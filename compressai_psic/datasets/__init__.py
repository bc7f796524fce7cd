r"""Image–caption datasets for training and evaluating shielded codecs.

- :mod:`~compressai_psic.datasets.base`: what every dataset shares
  (:class:`CaptionDataset`: ``(image, caption)`` samples, error handling;
  :func:`image_transform`, :func:`collate_captions`);
- :mod:`~compressai_psic.datasets.captions`: :class:`Flickr8kCaptions` and
  :class:`CaptionListDataset` (CC3M-style lists);
- :mod:`~compressai_psic.datasets.images`: :class:`RateDistortionImages`,
  CompressAI's ``ImageFolder`` layout, without captions;
- :mod:`~compressai_psic.datasets.scenes`: the procedural scene benchmark and
  :class:`SceneCaptions`, rendered on the fly.
"""

from .base import (
    CAPTION_MODES,
    CROP_MODES,
    ON_ERROR,
    CaptionDataset,
    DatasetImageError,
    DatasetSampleError,
    EnsureMinSize,
    collate_captions,
    image_transform,
    load_rgb_image,
)
from .captions import (
    CaptionListDataset,
    Flickr8kCaptions,
    read_captions_file,
    read_name_list,
)
from .images import RateDistortionImages
from .scenes import SceneCaptions

__all__ = [
    "CAPTION_MODES",
    "CROP_MODES",
    "ON_ERROR",
    "CaptionDataset",
    "CaptionListDataset",
    "DatasetImageError",
    "DatasetSampleError",
    "EnsureMinSize",
    "Flickr8kCaptions",
    "RateDistortionImages",
    "SceneCaptions",
    "collate_captions",
    "image_transform",
    "load_rgb_image",
    "read_captions_file",
    "read_name_list",
]
