r"""Image transforms: what a scraper does to a published image, differentiably.

CompressAI keeps its image transforms in ``compressai.transforms``; this package
holds the transforms PSIC needs that are not colour-space conversions:
:mod:`~compressai_psic.transforms.scraper`, differentiable JPEG, resizing and
grey-world colour correction, and :class:`RandomScraperTransform`, which draws
one per image for expectation over transformations (EOT) in training.
"""

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
    "RandomJPEG",
    "RandomResize",
    "RandomScraperTransform",
    "dct_matrix",
    "default_scraper_transforms",
    "diff_jpeg",
    "differentiable_round",
    "grey_world",
    "jpeg_quant_tables",
    "resize",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]
