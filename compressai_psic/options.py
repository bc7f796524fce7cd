r"""Option values shared by the command lines and the modules they configure.

They live here, free of torch and CompressAI, so that a parser can offer them as
choices and ``--help`` answers without loading the training machinery; the
modules that use them import them from here.
"""

from __future__ import annotations

__all__ = [
    "CROP_MODES",
    "DEFAULT_TAU",
    "ENSEMBLE_MODES",
    "FEATURE_STAGES",
    "MAX_DECODE_PIXELS",
    "ON_ERROR",
]

#: How a training image is brought to the patch size.
CROP_MODES = ("random_crop", "center_crop", "resize")
#: What a dataset does with an unreadable sample.
ON_ERROR = ("raise", "skip")
#: Evidence temperature τ of the paper's UAEO loss.
DEFAULT_TAU = 0.1
#: How the members of a VLP ensemble are combined (``losses.uaeo.balanced_sum``).
ENSEMBLE_MODES = ("mean", "balanced")
#: Stages of a ResNet image tower whose features the feature-disruption loss reads.
FEATURE_STAGES = ("layer1", "layer2", "layer3", "layer4")

#: Most pixels one decode may produce (padded height × width × batch size), as
#: Pillow's ``Image.MAX_IMAGE_PIXELS`` does for images: 4096 × 4096 (4K and
#: 12-megapixel photos pass). A learned decoder needs far more memory per pixel
#: than Pillow (measured on CPU: about 250 bytes per pixel for the demo codec,
#: N=64; 500 for bmshj2018-hyperprior quality 3, N=128), so the limit bounds a
#: decode to a few GB. It is the default of every decoding function's
#: ``max_pixels`` argument, which changes it for one call (``None``: no limit);
#: nothing changes it for the whole process.
MAX_DECODE_PIXELS = 4096 * 4096
