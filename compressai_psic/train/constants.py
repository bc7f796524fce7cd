"""Defaults and choices of the training command, and the files it writes."""

from __future__ import annotations

from typing import Any, Dict

__all__ = [
    "BEST_CHECKPOINT_NAME",
    "CHECKPOINT_NAME",
    "DATASET_FORMATS",
    "DEFAULT_LAMBDA",
    "DEFAULT_MODEL",
    "DEFAULT_VLP",
    "EOT_CHOICES",
    "LOG_FILE_NAME",
    "PATH_MODES",
    "STAGE2_PARAMS",
    "STAGE_DEFAULTS",
    "VLP_PRECISIONS",
]


#: Defaults of the published recipe, per stage (first rate point, CLIP ViT-B/32).
STAGE_DEFAULTS: Dict[int, Dict[str, Any]] = {
    1: {
        "learning_rate": 1e-4,
        "batch_size": 128,
        "lambda_vlp": 0.0009,
        "epochs": 200,
        "milestones": [80, 100],
    },
    2: {
        "learning_rate": 1e-5,
        "batch_size": 64,
        "lambda_vlp": 0.07,
        "epochs": 100,
        "milestones": [10],
    },
}
#: What trains in stage 2: ``synthesis`` (g_s and the trigger projections, the
#: paper's choice) or ``triggers`` (the trigger projections only).
STAGE2_PARAMS = ("synthesis", "triggers")
#: ``sample``: one path per sample, drawn Bernoulli(½) (the paper);
#: ``both``: every sample decoded on both paths.
PATH_MODES = ("sample", "both")
DATASET_FORMATS = ("flickr8k", "list", "imagefolder", "scenes")
VLP_PRECISIONS = ("bf16", "fp16", "fp32")
DEFAULT_MODEL = "bmshj2018-hyperprior"
#: Transforms of ``--eot`` (see ``transforms.default_scraper_transforms``).
EOT_CHOICES = (
    "identity",
    "jpeg",
    "resize",
    "greyworld",
    "blur",
    "median",
    "downup",
    "noisyup",
)
DEFAULT_LAMBDA = 0.0011
DEFAULT_VLP = "open_clip:ViT-B-32:openai"
CHECKPOINT_NAME = "checkpoint.pth.tar"
BEST_CHECKPOINT_NAME = "checkpoint_best_loss.pth.tar"
LOG_FILE_NAME = "train.log"
_PSIC_HY2018 = "psic-hy2018"
_PSIC_HY2018_CHANNELS = {"N": 192, "M": 320}
