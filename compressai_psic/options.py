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
