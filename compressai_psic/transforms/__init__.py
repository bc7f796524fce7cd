r"""Image transforms: what a scraper does to a published image, differentiably.

CompressAI keeps its image transforms in ``compressai.transforms``; this package
holds the transforms PSIC needs that are not colour-space conversions:
:mod:`~compressai_psic.transforms.scraper`, differentiable JPEG, resizing and
grey-world colour correction, and :class:`RandomScraperTransform`, which draws
one per image for expectation over transformations (EOT) in training; and
:mod:`~compressai_psic.transforms.purification`, the blind purifications
(blur, median, down-and-up sampling, noisy upscaling).
"""

from .purification import (
    MedianFilter,
    NoisyUpscale,
    RandomBlur,
    RandomDownUp,
    down_up,
    gaussian_blur,
    gaussian_kernel,
    median_filter,
    noisy_upscale,
    purification_transforms,
)
from .scraper import (
    CHROMA_QUANT_TABLE,
    LUMA_QUANT_TABLE,
    ROUNDING_MODES,
    Augmentation,
    DiffJPEG,
    GreyWorld,
    Identity,
    RandomJPEG,
    RandomResize,
    RandomScraperTransform,
    dct_matrix,
    default_scraper_transforms,
    diff_jpeg,
    differentiable_round,
    grey_world,
    jpeg_quant_tables,
    resize,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)

__all__ = [
    "CHROMA_QUANT_TABLE",
    "LUMA_QUANT_TABLE",
    "ROUNDING_MODES",
    "Augmentation",
    "DiffJPEG",
    "GreyWorld",
    "Identity",
    "MedianFilter",
    "NoisyUpscale",
    "RandomBlur",
    "RandomDownUp",
    "RandomJPEG",
    "RandomResize",
    "RandomScraperTransform",
    "dct_matrix",
    "default_scraper_transforms",
    "diff_jpeg",
    "differentiable_round",
    "down_up",
    "gaussian_blur",
    "gaussian_kernel",
    "grey_world",
    "jpeg_quant_tables",
    "median_filter",
    "noisy_upscale",
    "purification_transforms",
    "resize",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]
