r"""Two-stage PSIC training for any shielded CompressAI architecture.

One command trains a privacy-shielded codec the way CompressAI's
``examples/train.py`` trains a plain one::

    # stage 1: every parameter, fixed UAEO weighting
    python -m compressai_psic.train -m bmshj2018-hyperprior -q 3 \
        -d data/flickr8k --dataset-format flickr8k \
        --vlp open_clip:ViT-B-32:weights/ViT-B-32.pt --stage 1 --save-dir runs/s1

    # stage 2: synthesis only (the paper's default), adaptive UAEO weighting
    python -m compressai_psic.train --init runs/s1/checkpoint_best_loss.pth.tar \
        -d data/flickr8k --vlp open_clip:ViT-B-32:weights/ViT-B-32.pt \
        --stage 2 --save-dir runs/s2 --export

    # several GPUs or nodes
    torchrun --nproc_per_node 8 -m compressai_psic.train ...

Stage-dependent defaults (learning rate, batch size, λ_vlp, epochs, LR milestones)
follow the published recipe (:data:`STAGE_DEFAULTS`). Checkpoints use CompressAI's
keys (``epoch``, ``state_dict``, ``loss``, ``optimizer``, ``aux_optimizer``,
``lr_scheduler``) plus ``step``, ``stage``, ``architecture``, ``best_loss`` and
``args`` (plain values, so ``torch.load(weights_only=True)`` reads them); the save
directory keeps ``checkpoint.pth.tar`` (last), ``checkpoint_best_loss.pth.tar``
(lowest validation loss) and ``train.log``.

**Starting points.** ``--init`` starts from weights: ``zoo:NAME:QUALITY[:METRIC]``
(CompressAI's pretrained model, upgraded with :func:`~compressai_psic.shield`), a
CompressAI checkpoint (upgraded the same way) or a PSIC checkpoint (e.g. the
stage-1 result, to start stage 2). ``--checkpoint`` resumes a run of this tool:
model, optimisers, scheduler, step count and best loss; it continues with the
epoch after the saved one (a run stopped by ``--max-steps`` mid-epoch resumes at
the next epoch), and ``--max-steps`` counts the steps of both runs.

**Unreadable samples.** With ``--on-error raise`` (the default) a missing,
truncated or undecodable image stops training: the error, naming the file, is
logged (also to ``train.log``) and the command exits with status 1. With
``--on-error skip`` the sample is replaced by the next readable one and a warning
naming the file is logged once.

**Distributed training.** Under ``torchrun`` (``WORLD_SIZE`` > 1) every process
trains on its shard of the data (``DistributedSampler``) with
``DistributedDataParallel`` (NCCL on CUDA, Gloo on CPU); ``--batch-size`` is per
process, and the UAEO similarity matrices are per process batch. The entropy
bottleneck's auxiliary gradients are averaged across processes too, so every
replica keeps the same quantiles. Only rank 0 logs and writes files.

Method: `"Privacy-Shielded Image Compression: Defending Against Exploitation
from Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_,
ICML 2025.
"""

import importlib
from typing import Any, List

from .arguments import build_parser, parse_args
from .constants import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    DATASET_FORMATS,
    DEFAULT_LAMBDA,
    DEFAULT_MODEL,
    DEFAULT_VLP,
    EOT_CHOICES,
    LOG_FILE_NAME,
    PATH_MODES,
    STAGE2_PARAMS,
    STAGE_DEFAULTS,
    VLP_PRECISIONS,
)
from .logs import LOGGER_NAME

# The training machinery (torch, CompressAI, the VLPs) loads on first use, so that
# ``python -m compressai_psic.train --help`` answers at once.
_LAZY = {
    "export_state_dict": "checkpoints",
    "save_checkpoint": "checkpoints",
    "build_criterion": "criterion",
    "build_eot": "criterion",
    "compute_loss": "criterion",
    "build_datasets": "data",
    "DistributedContext": "distributed",
    "setup_distributed": "distributed",
    "unwrap": "distributed",
    "main": "loop",
    "run": "loop",
    "MetricTotals": "metrics",
    "build_model": "model",
    "configure_optimizers": "optimizers",
    "set_trainable": "optimizers",
    "split_parameters": "optimizers",
    "draw_paths": "steps",
    "train_step": "steps",
    "validate": "steps",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BEST_CHECKPOINT_NAME",
    "CHECKPOINT_NAME",
    "DATASET_FORMATS",
    "DEFAULT_LAMBDA",
    "DEFAULT_MODEL",
    "DEFAULT_VLP",
    "EOT_CHOICES",
    "LOGGER_NAME",
    "LOG_FILE_NAME",
    "PATH_MODES",
    "STAGE2_PARAMS",
    "STAGE_DEFAULTS",
    "VLP_PRECISIONS",
    "DistributedContext",
    "MetricTotals",
    "build_criterion",
    "build_datasets",
    "build_eot",
    "build_model",
    "build_parser",
    "compute_loss",
    "configure_optimizers",
    "draw_paths",
    "export_state_dict",
    "main",
    "parse_args",
    "run",
    "save_checkpoint",
    "set_trainable",
    "setup_distributed",
    "split_parameters",
    "train_step",
    "unwrap",
    "validate",
]
