r"""Evaluation of shielded codecs: rate–distortion of both paths and privacy
against VLPs.

- :mod:`~compressai_psic.evaluation.rd`: rate (real bytes), PSNR, MS-SSIM and
  times of every decode path, and CompressAI's ``eval_model`` JSON
  (``python -m compressai_psic.utils.eval_model``);
- :mod:`~compressai_psic.evaluation.retrieval`: Recall@K, the attack success
  rate and the embedding of images and captions;
- :mod:`~compressai_psic.evaluation.attacks`: what a scraper does to a
  published image (JPEG, downscaling, colour correction, fitted colour maps);
- :mod:`~compressai_psic.evaluation.image_dependence`: how much of protected −
  full all images share;
- :mod:`~compressai_psic.evaluation.codec`: one codec round trip per batch and
  the quality of its decodes;
- :mod:`~compressai_psic.evaluation.shield`: :func:`evaluate_shield`, the whole
  privacy evaluation (``tools/eval_retrieval.py``, ``psic demo``).
"""

from .attacks import (
    BLIND_ATTACKS,
    DEFAULT_ATTACKS,
    FITTED_ATTACKS,
    AffineColourAttack,
    Attack,
    ChainAttack,
    FunctionAttack,
    GreyWorldAttack,
    OffsetAttack,
    PatternAttack,
    apply_affine_colour,
    build_attack,
    build_attacks,
    downscale,
    fit_affine_colour,
    jpeg_reencode,
    quantise_8bit,
)
from .codec import (
    codec_batches,
    codec_roundtrip,
    finite_mean,
    ms_ssim_8bit,
    ms_ssim_window,
    prepare_codec,
    psnr_8bit,
)
from .image_dependence import (
    DifferenceStats,
    common_share,
)
from .rd import (
    BPP_SOURCES,
    DEFAULT_CONDITIONS,
    MS_SSIM_MIN_SIDE,
    RESULT_KEYS,
    collect_images,
    compute_metrics,
    condition_label,
    evaluate_dataset,
    evaluate_image,
    ms_ssim_rgb,
    parse_condition,
    path_results,
    psnr_rgb,
    rd_json,
)
from .retrieval import (
    DEFAULT_KS,
    DIRECTIONS,
    attack_success_rate,
    caption_owners,
    chance_recall,
    embed_images,
    embed_texts,
    recall_at_k,
    recall_from_hits,
    retrieval_hits,
    similarity,
)
from .shield import (
    ROBUSTNESS_VARIANTS,
    ROLES,
    DatasetSlice,
    evaluate_privacy,
    evaluate_shield,
    scraper_transforms,
)

__all__ = [
    "BLIND_ATTACKS",
    "BPP_SOURCES",
    "DEFAULT_ATTACKS",
    "DEFAULT_CONDITIONS",
    "DEFAULT_KS",
    "DIRECTIONS",
    "FITTED_ATTACKS",
    "MS_SSIM_MIN_SIDE",
    "RESULT_KEYS",
    "ROBUSTNESS_VARIANTS",
    "ROLES",
    "AffineColourAttack",
    "Attack",
    "ChainAttack",
    "DatasetSlice",
    "DifferenceStats",
    "FunctionAttack",
    "GreyWorldAttack",
    "OffsetAttack",
    "PatternAttack",
    "apply_affine_colour",
    "attack_success_rate",
    "build_attack",
    "build_attacks",
    "caption_owners",
    "chance_recall",
    "codec_batches",
    "codec_roundtrip",
    "collect_images",
    "common_share",
    "compute_metrics",
    "condition_label",
    "downscale",
    "embed_images",
    "embed_texts",
    "evaluate_dataset",
    "evaluate_image",
    "evaluate_privacy",
    "evaluate_shield",
    "finite_mean",
    "fit_affine_colour",
    "jpeg_reencode",
    "ms_ssim_8bit",
    "ms_ssim_rgb",
    "ms_ssim_window",
    "parse_condition",
    "path_results",
    "prepare_codec",
    "psnr_8bit",
    "psnr_rgb",
    "quantise_8bit",
    "rd_json",
    "recall_at_k",
    "recall_from_hits",
    "retrieval_hits",
    "scraper_transforms",
    "similarity",
]
