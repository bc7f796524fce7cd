r"""Training objectives of PSIC, in CompressAI's loss conventions.

Three criteria, registered in ``compressai.registry.CRITERIONS``:

- ``"psic-rd"`` :class:`DualPathRateDistortionLoss`: rate plus distortion of the
  full and the protected reconstructions, each with its own λ;
- ``"psic-uaeo"`` :class:`UAEOLoss`: the Uncertainty-Aware Encryption-Oriented
  loss, which makes the protected reconstruction meaningless to a frozen
  vision-language model (VLP), with the fixed (stage 1) or adaptive (stage 2)
  weighting of its terms;
- ``"psic"`` :class:`PSICLoss`: ``bpp + distortion + λ_vlp · L_vlp``, plus the
  optional full-path semantic and protected low-frequency terms, and the
  transfer and visibility terms of :mod:`~compressai_psic.losses.transfer`
  (ResNet feature disruption, activity-masked difference, balanced ensembles).

They return dictionaries like CompressAI's ``RateDistortionLoss`` (``"bpp_loss"``,
``"mse_loss"`` or ``"ms_ssim_loss"``, ``"loss"``) with per-path and per-term
entries added.
"""

from .psic import PSICLoss, common_difference, low_frequency_mse, semantic_drift
from .rate_distortion import PATHS, DualPathRateDistortionLoss, bpp_loss, decoded_paths
from .transfer import (
    FEATURE_STAGES,
    activity_weights,
    balanced_sum,
    feature_disruption,
    masked_difference,
    periodic_energy,
)
from .uaeo import (
    DEFAULT_LOGIT_SCALE,
    DEFAULT_TAU,
    ENSEMBLE_MODES,
    WEIGHTINGS,
    UAEOLoss,
    adaptive_weights,
    evidential_split,
)

__all__ = [
    "DEFAULT_LOGIT_SCALE",
    "DEFAULT_TAU",
    "ENSEMBLE_MODES",
    "FEATURE_STAGES",
    "PATHS",
    "WEIGHTINGS",
    "DualPathRateDistortionLoss",
    "PSICLoss",
    "UAEOLoss",
    "activity_weights",
    "adaptive_weights",
    "balanced_sum",
    "bpp_loss",
    "common_difference",
    "decoded_paths",
    "evidential_split",
    "feature_disruption",
    "low_frequency_mse",
    "masked_difference",
    "periodic_energy",
    "semantic_drift",
]
