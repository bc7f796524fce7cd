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

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..datasets import (
    CROP_MODES,
    ON_ERROR,
    CaptionListDataset,
    DatasetSampleError,
    Flickr8kCaptions,
    RateDistortionImages,
    SceneCaptions,
    collate_captions,
)
from ..losses import DEFAULT_TAU, DualPathRateDistortionLoss, PSICLoss
from ..utils import sha256_file

__all__ = [
    "DATASET_FORMATS",
    "PATH_MODES",
    "STAGE2_PARAMS",
    "STAGE_DEFAULTS",
    "DistributedContext",
    "MetricTotals",
    "build_criterion",
    "build_datasets",
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

LOGGER_NAME = "compressai_psic.train"
logger = logging.getLogger(LOGGER_NAME)

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
#: Transforms of ``--eot`` (see ``augment.default_scraper_transforms``).
EOT_CHOICES = ("identity", "jpeg", "resize", "greyworld")
DEFAULT_LAMBDA = 0.0011
DEFAULT_VLP = "open_clip:ViT-B-32:openai"
CHECKPOINT_NAME = "checkpoint.pth.tar"
BEST_CHECKPOINT_NAME = "checkpoint_best_loss.pth.tar"
LOG_FILE_NAME = "train.log"
_PSIC_HY2018 = "psic-hy2018"
_PSIC_HY2018_CHANNELS = {"N": 192, "M": 320}


def _model_choices() -> List[str]:
    from ..zoo import image_models

    return list(image_models) + [_PSIC_HY2018]


# --------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (CompressAI's ``examples/train.py`` flags + PSIC's)."""
    parser = argparse.ArgumentParser(
        prog="python -m compressai_psic.train",
        description="Train a privacy-shielded (PSIC) CompressAI model in two stages.",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "-m",
        "--model",
        choices=_model_choices(),
        default=None,
        help=f"architecture (default {DEFAULT_MODEL}; with --init or --checkpoint "
        "the file's architecture)",
    )
    model.add_argument(
        "-q", "--quality", type=int, default=3, help="quality level (default 3)"
    )
    model.add_argument(
        "--metric",
        choices=("mse", "ms-ssim"),
        default="mse",
        help="distortion metric, also of --init zoo: weights (default mse)",
    )
    model.add_argument(
        "--plan",
        default=None,
        help="injection plan: 'every-stage' (default for new models: biases at "
        "every synthesis stage) or 'late' (cheap dual decoding); with --init, "
        "re-plans the loaded model (kept triggers keep their weights)",
    )
    model.add_argument("--N", type=int, default=None, help="override N (scratch)")
    model.add_argument("--M", type=int, default=None, help="override M (scratch)")
    model.add_argument(
        "--init",
        type=str,
        default=None,
        help="starting weights: 'zoo:NAME:QUALITY[:METRIC]' (pretrained CompressAI, "
        "upgraded with shield), or a CompressAI or PSIC checkpoint file",
    )
    model.add_argument(
        "--checkpoint",
        type=str,
        default=None,
        help="resume from a checkpoint of this tool (model, optimizers, scheduler, "
        "epoch and step)",
    )

    stage = parser.add_argument_group("PSIC")
    stage.add_argument(
        "--stage",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: every parameter, fixed UAEO weights; 2: see --stage2-params, "
        "adaptive UAEO weights (default 1)",
    )
    stage.add_argument(
        "--stage2-params",
        choices=STAGE2_PARAMS,
        default="synthesis",
        help="stage 2 trains g_s and the trigger projections (synthesis), or the "
        "trigger projections only (triggers; keeps the full decode exactly the "
        "base model's for anchored architectures) (default synthesis)",
    )
    stage.add_argument(
        "--paths",
        choices=PATH_MODES,
        default="sample",
        help="decode each sample on one path drawn Bernoulli(1/2), or on both "
        "(default sample)",
    )
    stage.add_argument(
        "--lambda",
        dest="lmbda",
        metavar="LAMBDA",
        type=float,
        default=None,
        help=f"sets --lambda-full and --lambda-prot (default {DEFAULT_LAMBDA})",
    )
    stage.add_argument(
        "--lambda-full", type=float, default=None, help="λ of the full decode"
    )
    stage.add_argument(
        "--lambda-prot", type=float, default=None, help="λ of the protected decode"
    )
    stage.add_argument(
        "--lambda-vlp",
        type=float,
        default=None,
        help="weight of the UAEO loss (stage 1: 0.0009, stage 2: 0.07); 0 trains "
        "rate-distortion only and needs no VLP",
    )
    stage.add_argument(
        "--tau", type=float, default=DEFAULT_TAU, help=f"evidence τ ({DEFAULT_TAU})"
    )
    stage.add_argument(
        "--lambda-semantic",
        type=float,
        default=0.0,
        help="weight of 1 - cos(f(full decode), f(original)) with the --vlp "
        "model(s): keeps the full path's meaning when g_s trains (default 0, "
        "the paper)",
    )
    stage.add_argument(
        "--lambda-lowfreq",
        type=float,
        default=0.0,
        help="weight of 255²·MSE of the k×k block means of the protected decode "
        "and the original: no colour casts or shading changes (default 0)",
    )
    stage.add_argument(
        "--lowfreq-kernel",
        type=int,
        default=8,
        help="block size k of --lambda-lowfreq (default 8)",
    )
    stage.add_argument(
        "--eot",
        default="none",
        metavar="NAMES",
        help="comma-separated scraper transforms drawn per image before the VLP "
        f"sees a protected decode, from {list(EOT_CHOICES)}, or 'none' "
        "(default none, the paper)",
    )
    stage.add_argument(
        "--vlp",
        action="append",
        default=None,
        metavar="SPEC",
        help="VLP to defend against, repeat for an ensemble: "
        "'open_clip:MODEL[:WEIGHTS]' (file, directory, tag or 'random'), "
        "'clip:NAME[:ROOT]' or 'tiny[:SEED]' (tests) "
        f"(default {DEFAULT_VLP})",
    )
    stage.add_argument(
        "--vlp-cache-dir", type=str, default=None, help="cache of open_clip tags"
    )
    stage.add_argument(
        "--vlp-precision",
        choices=VLP_PRECISIONS,
        default="bf16",
        help="autocast type of the VLP on CUDA; CPU runs fp32 (default bf16)",
    )

    data = parser.add_argument_group("data")
    data.add_argument("-d", "--dataset", type=str, default=None, help="data folder")
    data.add_argument(
        "--dataset-format",
        choices=DATASET_FORMATS,
        default="flickr8k",
        help="flickr8k (captions.txt + Images/), list (stem.jpg + stem.txt listed "
        "in <split>.txt), imagefolder (CompressAI layout, no captions), scenes "
        "(procedural captioned scenes, no files) (default flickr8k)",
    )
    data.add_argument(
        "--train-split",
        default="train",
        help="training split; 'all': every image of captions.txt (default train)",
    )
    data.add_argument(
        "--val-split",
        default=None,
        help="held-out split (default: 'test' for imagefolder, else 'val'); "
        "'none' disables validation",
    )
    data.add_argument(
        "--patch-size",
        type=int,
        nargs=2,
        default=(256, 256),
        help="size of the training patches (default 256 256)",
    )
    data.add_argument(
        "--crop",
        choices=CROP_MODES,
        default="random_crop",
        help="how training images become patches (default random_crop)",
    )
    data.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="raise",
        help="unreadable image: stop with an error naming it, or skip it "
        "(default raise)",
    )
    data.add_argument(
        "--scene-samples", type=int, default=10000, help="scenes: training pairs"
    )
    data.add_argument(
        "--scene-val-samples", type=int, default=500, help="scenes: validation pairs"
    )
    data.add_argument(
        "-n", "--num-workers", type=int, default=4, help="data workers (default 4)"
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "-e", "--epochs", type=int, default=None, help="stage 1: 200, stage 2: 100"
    )
    optim.add_argument(
        "-lr",
        "--learning-rate",
        type=float,
        default=None,
        help="stage 1: 1e-4, stage 2: 1e-5",
    )
    optim.add_argument(
        "--trigger-learning-rate",
        type=float,
        default=None,
        help="own learning rate of the condition encoder and trigger projections "
        "(default: --learning-rate)",
    )
    optim.add_argument(
        "--aux-learning-rate", type=float, default=1e-3, help="quantiles (1e-3)"
    )
    optim.add_argument(
        "--batch-size", type=int, default=None, help="per process (stage 1: 128, 2: 64)"
    )
    optim.add_argument(
        "--test-batch-size", type=int, default=64, help="validation batch (64)"
    )
    optim.add_argument(
        "--milestones",
        type=int,
        nargs="+",
        default=None,
        help="MultiStepLR epochs (stage 1: 80 100, stage 2: 10)",
    )
    optim.add_argument("--gamma", type=float, default=0.1, help="LR decay (0.1)")
    optim.add_argument(
        "--clip_max_norm", type=float, default=1.0, help="gradient clipping (1.0)"
    )
    optim.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many steps"
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--cuda",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="train on CUDA (default: on when available)",
    )
    run.add_argument(
        "--save",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write checkpoints and train.log (default on)",
    )
    run.add_argument(
        "--save-dir",
        type=str,
        default=os.path.join("runs", "psic"),
        help="checkpoints, train.log and TensorBoard logs (default runs/psic)",
    )
    run.add_argument("--seed", type=int, default=None, help="random seed")
    run.add_argument(
        "--log-every", type=int, default=50, help="steps between logs (50)"
    )
    run.add_argument(
        "--export",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="at the end, export the best weights as <NAME>-<sha256[:8]>.pth.tar "
        "(default name psic-<architecture>-stage<k>)",
    )
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses and completes the arguments (stage defaults, λs, VLP specs)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in STAGE_DEFAULTS[args.stage].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    base = args.lmbda if args.lmbda is not None else DEFAULT_LAMBDA
    if args.lambda_full is None:
        args.lambda_full = base
    if args.lambda_prot is None:
        args.lambda_prot = base
    if args.vlp is None:
        args.vlp = [] if args.lambda_vlp == 0 else [DEFAULT_VLP]
    if args.val_split is None:
        args.val_split = "test" if args.dataset_format == "imagefolder" else "val"
    if args.dataset is None and args.dataset_format != "scenes":
        parser.error(
            f"-d/--dataset is required for --dataset-format {args.dataset_format}"
        )
    if args.dataset_format == "imagefolder" and args.lambda_vlp != 0:
        parser.error(
            "imagefolder datasets have no captions, so the UAEO loss cannot be "
            "computed: pass --lambda-vlp 0 or use flickr8k, list or scenes"
        )
    for key in ("batch_size", "test_batch_size", "epochs", "log_every"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.max_steps is not None and args.max_steps < 0:
        parser.error("--max-steps must be >= 0")
    lambdas = (args.lambda_full, args.lambda_prot, args.lambda_semantic)
    if args.lambda_vlp < 0 or min(lambdas + (args.lambda_lowfreq,)) < 0:
        parser.error("λ values must be non-negative")
    if args.lowfreq_kernel < 1:
        parser.error("--lowfreq-kernel must be >= 1")
    try:
        build_eot(args.eot)
    except ValueError as err:
        parser.error(str(err))
    if args.checkpoint and args.init:
        parser.error("--checkpoint resumes a run; it cannot be combined with --init")
    if args.init and (args.N is not None or args.M is not None):
        parser.error("--N/--M apply to models built from scratch, not to --init")
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda was given but CUDA is not available (use --no-cuda)")
    return args


def _plain(value: Any) -> Any:
    """Arguments as primitives (lists, not tuples) for weights-only checkpoints."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ------------------------------------------------------------------ distribution


@dataclass
class DistributedContext:
    """Where this process runs: rank, world size and device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(use_cuda: bool) -> DistributedContext:
    """Joins the ``torchrun`` process group when ``WORLD_SIZE`` > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, local_rank, world_size, device)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# ------------------------------------------------------------------------- model


def _zoo_init(spec: str, default_metric: str) -> nn.Module:
    import compressai.zoo as cai_zoo

    from ..models import shield

    parts = spec.split(":")
    if len(parts) not in (3, 4) or parts[0] != "zoo":
        raise ValueError(
            f'Invalid --init "{spec}": use zoo:NAME:QUALITY[:METRIC] or a file path'
        )
    name, quality = parts[1], parts[2]
    metric = parts[3] if len(parts) == 4 else default_metric
    if name not in cai_zoo.image_models:
        raise ValueError(
            f'Invalid zoo model "{name}" in --init: use one of '
            f"{sorted(cai_zoo.image_models)}"
        )
    try:
        quality = int(quality)
    except ValueError:
        raise ValueError(f'Invalid quality "{quality}" in --init {spec}') from None
    base = cai_zoo.image_models[name](quality, metric=metric, pretrained=True)
    return shield(base)


def build_model(args: argparse.Namespace) -> nn.Module:
    """The shielded model to train, from ``--init`` or from scratch.

    ``--init zoo:NAME:QUALITY[:METRIC]`` loads CompressAI's pretrained weights and
    upgrades them with :func:`~compressai_psic.shield`; a file goes through
    :func:`~compressai_psic.load_checkpoint` (CompressAI checkpoints are upgraded,
    PSIC ones keep their triggers). ``--model``, when given, must match.
    """
    from ..models import SHIELDED_CLASSES, load_checkpoint, shield
    from ..zoo import image_models

    if args.init:
        if args.init.startswith("zoo:"):
            model = _zoo_init(args.init, args.metric)
        else:
            model = load_checkpoint(args.init, map_location="cpu")
        if args.model is not None and model.architecture != args.model:
            raise ValueError(
                f"--model {args.model} does not match the architecture of --init "
                f'{args.init} ("{model.architecture}"); drop --model or change it'
            )
        if args.plan is not None and args.plan != model.plan:
            model = shield(model, plan=args.plan)
        return model
    name = args.model or DEFAULT_MODEL
    kwargs = {} if args.plan is None else {"plan": args.plan}
    if args.N is not None:
        kwargs["N"] = args.N
    if args.M is not None:
        if name.startswith("cheng2020"):
            raise ValueError(f"{name} has no M; set --N only")
        kwargs["M"] = args.M
    if name == _PSIC_HY2018:
        config = dict(_PSIC_HY2018_CHANNELS, **kwargs)
        return SHIELDED_CLASSES[_PSIC_HY2018](**config)
    return image_models[name](args.quality, metric=args.metric, **kwargs)


def set_trainable(model: nn.Module, stage: int, stage2_params: str = "synthesis"):
    """Sets ``requires_grad`` for a stage; returns the names that train.

    Stage 1 trains everything. Stage 2 trains the synthesis transform and the
    trigger projections with the condition MLP frozen (``synthesis``, the
    paper's recipe) or only the trigger projections (``triggers``).
    """
    if stage not in (1, 2):
        raise ValueError(f"Invalid stage {stage!r}: use one of [1, 2]")
    if stage2_params not in STAGE2_PARAMS:
        raise ValueError(
            f'Invalid stage2_params "{stage2_params}": use one of {list(STAGE2_PARAMS)}'
        )
    net = unwrap(model)
    if stage == 1:
        trainable = {name for name, _ in net.named_parameters()}
    else:
        groups = net.parameter_groups()
        trainable = set(groups["trigger_projections"])
        if stage2_params == "synthesis":
            trainable |= set(groups["synthesis"])
    for name, param in net.named_parameters():
        param.requires_grad_(name in trainable)
    return sorted(trainable)


def split_parameters(
    model: nn.Module,
) -> Tuple[Dict[str, nn.Parameter], Dict[str, nn.Parameter]]:
    """Trainable parameters split into main and auxiliary (``.quantiles``).

    Unlike CompressAI's ``net_aux_optimizer`` this accepts frozen parameters:
    they belong to neither set.
    """
    main_params: Dict[str, nn.Parameter] = {}
    aux_params: Dict[str, nn.Parameter] = {}
    for name, param in unwrap(model).named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".quantiles"):
            aux_params[name] = param
        else:
            main_params[name] = param
    return main_params, aux_params


def configure_optimizers(
    model: nn.Module,
    learning_rate: float,
    aux_learning_rate: float,
    trigger_learning_rate: Optional[float] = None,
) -> Tuple[torch.optim.Optimizer, Optional[torch.optim.Optimizer]]:
    """Adam over the main parameters, and Adam over the trainable quantiles (or
    ``None`` when they are frozen).

    With ``trigger_learning_rate`` the condition encoder and the projections
    form their own parameter group: fresh projections start at zero and need a
    larger step than a pretrained synthesis, which a large step would wreck.
    """
    main_params, aux_params = split_parameters(model)
    if not main_params:
        raise ValueError("No trainable parameter: nothing to optimise")
    trigger_names = set()
    if trigger_learning_rate is not None:
        groups = unwrap(model).parameter_groups()
        trigger_names = set(groups["trigger_encoder"] + groups["trigger_projections"])
    rest = [main_params[n] for n in sorted(main_params) if n not in trigger_names]
    triggers = [main_params[n] for n in sorted(main_params) if n in trigger_names]
    param_groups = [{"params": rest}] if rest else []
    if triggers:
        param_groups.append({"params": triggers, "lr": trigger_learning_rate})
    optimizer = torch.optim.Adam(param_groups, lr=learning_rate)
    aux_optimizer = None
    if aux_params:
        aux_optimizer = torch.optim.Adam(
            (aux_params[n] for n in sorted(aux_params)), lr=aux_learning_rate
        )
    return optimizer, aux_optimizer


# ----------------------------------------------------------------------- criterion


def build_criterion(args: argparse.Namespace, device: torch.device) -> nn.Module:
    """:class:`~compressai_psic.losses.PSICLoss` against the ``--vlp`` model(s),
    or the dual-path rate–distortion loss alone when ``--lambda-vlp`` is 0."""
    if args.lambda_vlp == 0:
        return DualPathRateDistortionLoss(
            args.lambda_full, args.lambda_prot, metric=args.metric
        )
    from ..vlp import build_vlp, vlp_members

    if not args.vlp:
        raise ValueError("--lambda-vlp > 0 needs at least one --vlp")
    vlp = build_vlp(
        args.vlp,
        device=device,
        cache_dir=args.vlp_cache_dir,
        autocast=args.vlp_precision != "fp32",
    )
    dtype = torch.bfloat16 if args.vlp_precision == "bf16" else torch.float16
    for member, _ in vlp_members(vlp):
        member.autocast_dtype = dtype
    return PSICLoss(
        vlp,
        lmbda_full=args.lambda_full,
        lmbda_protected=args.lambda_prot,
        lmbda_vlp=args.lambda_vlp,
        metric=args.metric,
        stage=args.stage,
        tau=args.tau,
        lmbda_semantic=args.lambda_semantic,
        lmbda_lowfreq=args.lambda_lowfreq,
        lowfreq_kernel=args.lowfreq_kernel,
        transform=build_eot(args.eot, args.seed),
    )


def build_eot(spec: str, seed: Optional[int] = None) -> Optional[nn.Module]:
    """The ``--eot`` transform: one of the named scraper transforms per image."""
    if spec in ("", "none"):
        return None
    from ..augment import RandomScraperTransform, default_scraper_transforms

    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(EOT_CHOICES))
    if unknown or not names:
        raise ValueError(
            f"Invalid --eot {spec!r}: use names from {list(EOT_CHOICES)} or 'none'"
        )
    choices = default_scraper_transforms()
    return RandomScraperTransform({name: choices[name] for name in names}, seed=seed)


def compute_loss(
    criterion: nn.Module,
    output: Mapping[str, Any],
    images: Tensor,
    captions: Sequence[str],
    beta: Optional[Tensor],
) -> Dict[str, Any]:
    if isinstance(criterion, PSICLoss):
        return criterion(output, images, captions, beta)
    return criterion(output, images, beta)


# ------------------------------------------------------------------------ datasets


def _split_arg(root: str, split: str) -> str:
    candidate = os.path.join(root, split)
    return candidate if os.path.isfile(candidate) else split


def build_datasets(args: argparse.Namespace) -> Tuple[Dataset, Optional[Dataset]]:
    """Training and validation datasets of ``(image, caption)`` pairs.

    Validation uses centre crops (or the same resize) and the first caption.
    """
    patch = tuple(args.patch_size)
    val_mode = "resize" if args.crop == "resize" else "center_crop"
    common = {"on_error": args.on_error, "patch_size": patch}
    train_opts = dict(common, mode=args.crop, caption_mode="random")
    val_opts = dict(common, mode=val_mode, caption_mode="first")
    with_val = args.val_split.lower() != "none"
    fmt = args.dataset_format
    if fmt == "scenes":
        seed = 0 if args.seed is None else args.seed
        size = max(patch)
        train = SceneCaptions(
            "train", args.scene_samples, seed, size, captions_per_image=5, **train_opts
        )
        val = (
            SceneCaptions(
                "val",
                args.scene_val_samples,
                seed,
                size,
                distinct_captions=True,
                **val_opts,
            )
            if with_val
            else None
        )
        return train, val
    root = args.dataset
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    train = _folder_dataset(fmt, root, args.train_split, train_opts)
    val = None
    if with_val:
        try:
            val = _folder_dataset(fmt, root, args.val_split, val_opts)
        except (FileNotFoundError, RuntimeError) as err:
            raise FileNotFoundError(
                f"Validation split '{args.val_split}' of {root}: {err}. Name another "
                "with --val-split, or pass --val-split none to train without one"
            ) from err
    return train, val


def _folder_dataset(fmt: str, root: str, split: str, options: Dict[str, Any]):
    if fmt == "flickr8k":
        names = None if split == "all" else _split_arg(root, split)
        return Flickr8kCaptions(root, names, **options)
    if fmt == "list":
        for candidate in (os.path.join(root, split + ".txt"), _split_arg(root, split)):
            if os.path.isfile(candidate):
                return CaptionListDataset(candidate, root, **options)
        raise FileNotFoundError(
            f"List file for split '{split}' not found ({root}/{split}.txt)"
        )
    if fmt == "imagefolder":
        return RateDistortionImages(root, split, **options)
    raise ValueError(
        f'Invalid dataset format "{fmt}": use one of {list(DATASET_FORMATS)}'
    )


def _loader(
    dataset: Dataset,
    batch_size: int,
    ctx: DistributedContext,
    num_workers: int,
    train: bool,
    seed: int,
) -> Tuple[DataLoader, Optional[DistributedSampler]]:
    sampler = None
    if ctx.distributed:
        sampler = DistributedSampler(
            dataset,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=train,
            seed=seed,
        )
        per_rank = math.ceil(len(dataset) / ctx.world_size)
    else:
        per_rank = len(dataset)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_captions,
        pin_memory=ctx.device.type == "cuda",
        # A batch of one is always "clean" for UAEO: drop short tails in training.
        drop_last=train and per_rank >= batch_size,
        persistent_workers=num_workers > 0,
    )
    return loader, sampler


# -------------------------------------------------------------------------- metrics

#: Per-term running averages kept for the epoch summaries: term → weight key.
_AVERAGED = {
    "loss": "images",
    "rd_loss": "images",
    "bpp_loss": "images",
    "distortion_loss": "images",
    "mse_loss": "images",
    "mse_loss_full": "num_full",
    "mse_loss_protected": "num_protected",
    "ms_ssim_loss": "images",
    "ms_ssim_loss_full": "num_full",
    "ms_ssim_loss_protected": "num_protected",
    "vlp_loss": "images",
    "semantic_loss": "num_full",
    "lowfreq_loss": "num_protected",
    "clean_loss": "num_clean",
    "uncertain_loss": "num_uncertain",
    "i2t_loss": "num_uncertain",
    "t2i_loss": "num_uncertain",
    "clean_weight": "images",
    "uncertain_weight": "images",
    "protected_cosine": "num_protected",
    "original_cosine": "num_protected",
    "aux_loss": "images",
}
#: Totals summed over the epoch.
_COUNTS = ("images", "num_full", "num_protected", "num_clean", "num_uncertain")


class MetricTotals:
    """Weighted sums of the loss terms of an epoch, reducible across processes.

    Every process holds the same fixed key list, so ``all_reduce`` lines up.
    """

    def __init__(self):
        self.sums = {key: 0.0 for key in _AVERAGED}
        self.weights = {key: 0.0 for key in _AVERAGED}
        self.counts = {key: 0.0 for key in _COUNTS}

    def update(self, terms: Mapping[str, float]) -> None:
        for key in _COUNTS:
            self.counts[key] += float(terms.get(key, 0.0))
        for key, weight_key in _AVERAGED.items():
            if key in terms:
                weight = float(terms.get(weight_key, 0.0))
                self.sums[key] += float(terms[key]) * weight
                self.weights[key] += weight

    def all_reduce(self, device: torch.device) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        keys = list(_AVERAGED)
        values = (
            [self.sums[k] for k in keys]
            + [self.weights[k] for k in keys]
            + [self.counts[k] for k in _COUNTS]
        )
        packed = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(packed)
        packed = packed.tolist()
        n = len(keys)
        self.sums = dict(zip(keys, packed[:n]))
        self.weights = dict(zip(keys, packed[n : 2 * n]))
        self.counts = dict(zip(_COUNTS, packed[2 * n :]))

    def summary(self) -> Dict[str, float]:
        """Means of the terms seen, the counts, and PSNR of each path (MSE)."""
        out: Dict[str, float] = {}
        for key in _AVERAGED:
            if self.weights[key] > 0:
                out[key] = self.sums[key] / self.weights[key]
        out.update(self.counts)
        for path in ("full", "protected"):
            mse = out.get(f"mse_loss_{path}")
            if mse is not None and mse > 0:
                out[f"psnr_{path}"] = 10 * math.log10(1.0 / mse)
        return out


def _scalars(result: Mapping[str, Any], batch_size: int) -> Dict[str, float]:
    terms = {"images": float(batch_size)}
    for key, value in result.items():
        if isinstance(value, Tensor) and value.numel() == 1:
            terms[key] = float(value.detach())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            terms[key] = float(value)
    return terms


def _format(summary: Mapping[str, float]) -> str:
    order = [
        "loss",
        "bpp_loss",
        "mse_loss_full",
        "mse_loss_protected",
        "psnr_full",
        "psnr_protected",
        "ms_ssim_loss_full",
        "ms_ssim_loss_protected",
        "distortion_loss",
        "vlp_loss",
        "clean_loss",
        "uncertain_loss",
        "i2t_loss",
        "t2i_loss",
        "clean_weight",
        "uncertain_weight",
        "protected_cosine",
        "original_cosine",
        "aux_loss",
    ]
    # Adding 0.0 turns the -0.0 of empty terms into 0.
    parts = [f"{key}={summary[key] + 0.0:.5g}" for key in order if key in summary]
    counts = (
        f"images={summary.get('images', 0):g} "
        f"clean/uncertain={summary.get('num_clean', 0):g}/"
        f"{summary.get('num_uncertain', 0):g} "
        f"full/protected={summary.get('num_full', 0):g}/"
        f"{summary.get('num_protected', 0):g}"
    )
    return " ".join(parts + [counts])


# --------------------------------------------------------------------------- steps


def draw_paths(
    batch_size: int, device: torch.device, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Per-sample β ~ Bernoulli(½): 1 decodes the protected path, 0 the full one."""
    beta = torch.bernoulli(torch.full((batch_size,), 0.5), generator=generator)
    return beta.to(device)


def _all_reduce_mean_grads(params: Sequence[nn.Parameter]) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        return
    world_size = dist.get_world_size()
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world_size)


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    images: Tensor,
    captions: Sequence[str],
    optimizer: torch.optim.Optimizer,
    aux_optimizer: Optional[torch.optim.Optimizer] = None,
    paths: str = "sample",
    clip_max_norm: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, float]:
    """One optimisation step: forward on the drawn path(s), loss, backward,
    clipping, Adam, then the auxiliary (quantile) step.

    ``model`` may be wrapped in ``DistributedDataParallel``; its ``forward``
    takes the condition(s), so gradients are synchronised as usual.

    Returns:
        the scalar loss terms (floats), ``"aux_loss"`` and the counts
    """
    if paths not in PATH_MODES:
        raise ValueError(f'Invalid paths "{paths}": use one of {list(PATH_MODES)}')
    if paths == "both":
        beta = None
        output = model(images, condition=["full", "protected"])
    else:
        beta = draw_paths(images.size(0), images.device, generator)
        output = model(images, condition=beta)
    result = compute_loss(criterion, output, images, captions, beta)
    loss = result["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"Non-finite training loss: {float(loss)}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_max_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_max_norm)
    optimizer.step()

    terms = _scalars(result, images.size(0))
    if aux_optimizer is not None:
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss = unwrap(model).aux_loss()
        aux_loss.backward()
        aux_params = [p for g in aux_optimizer.param_groups for p in g["params"]]
        # The aux loss runs outside DDP's forward: average its gradients by hand
        # so the quantiles stay identical on every process.
        _all_reduce_mean_grads(aux_params)
        aux_optimizer.step()
        terms["aux_loss"] = float(aux_loss.detach())
    return terms


@torch.no_grad()
def validate(
    model: nn.Module,
    criterion: nn.Module,
    loader: DataLoader,
    ctx: DistributedContext,
    num_images: int = 4,
) -> Tuple[Dict[str, float], Optional[Tensor]]:
    """Deterministic validation of both paths (rounding, no noise).

    Returns the reduced summary and, for the first batch, a grid-ready tensor
    ``(3·n, 3, H, W)``: originals, full decodes, protected decodes.
    """
    net = unwrap(model)
    was_training = net.training
    net.eval()
    totals = MetricTotals()
    samples = None
    try:
        for images, captions in loader:
            images = images.to(ctx.device, non_blocking=True)
            output = net(images, condition=["full", "protected"])
            result = compute_loss(criterion, output, images, captions, None)
            totals.update(_scalars(result, images.size(0)))
            if samples is None:
                n = min(num_images, images.size(0))
                full, protected = output["x_hat"]
                samples = torch.cat(
                    (images[:n], full[:n].clamp(0, 1), protected[:n].clamp(0, 1))
                ).cpu()
    finally:
        net.train(was_training)
    totals.all_reduce(ctx.device)
    return totals.summary(), samples


# ---------------------------------------------------------------------- checkpoints


def save_checkpoint(
    state: Dict[str, Any], is_best: bool, save_dir: Union[str, os.PathLike]
) -> Path:
    """Writes ``checkpoint.pth.tar`` and, when best, ``checkpoint_best_loss.pth.tar``.

    The file is written next to its final name and renamed, so an interrupted
    save never leaves a truncated checkpoint.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / CHECKPOINT_NAME
    partial = save_dir / (CHECKPOINT_NAME + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    if is_best:
        shutil.copyfile(path, save_dir / BEST_CHECKPOINT_NAME)
    return path


def export_state_dict(
    model: nn.Module, out_dir: Union[str, os.PathLike], name: str
) -> Path:
    """Exports a model for release: ``<out_dir>/<name>-<sha256[:8]>.pth.tar``.

    As ``compressai.utils.update_model``: the entropy models' CDFs are updated
    (``update(force=True)``), only the state dict is kept (tensors on the CPU),
    and the name carries the first 8 hex digits of the file's sha256.
    """
    if not name or os.sep in name or "/" in name or name in (".", ".."):
        raise ValueError(f'Invalid export name "{name}": use a plain file stem')
    net = unwrap(model)
    net.update(force=True)
    state = type(net.state_dict())(
        (key, value.detach().cpu()) for key, value in net.state_dict().items()
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f"{name}.pth.tar.partial"
    torch.save(state, partial)
    digest = sha256_file(partial)[:8]
    path = out_dir / f"{name}-{digest}.pth.tar"
    os.replace(partial, path)
    return path


def _load_resume(path: str, device: torch.device) -> Dict[str, Any]:
    from ..utils import load_torch_file

    checkpoint = load_torch_file(path, map_location=device)
    missing = [
        key
        for key in ("epoch", "state_dict", "optimizer", "lr_scheduler")
        if key not in checkpoint
    ]
    if missing:
        raise ValueError(
            f"{path} is not a training checkpoint of this tool (missing {missing}); "
            "use --init to start from weights"
        )
    return checkpoint


def _model_from_resume(checkpoint: Mapping[str, Any], path: str) -> nn.Module:
    from ..models import get_architecture, guess_architecture
    from ..utils import normalize_state_dict

    state_dict = normalize_state_dict(checkpoint["state_dict"])
    name = checkpoint.get("architecture") or guess_architecture(state_dict)
    return get_architecture(name).shielded_class.from_state_dict(state_dict)


# -------------------------------------------------------------------------- logging


def _setup_logging(save_dir: Optional[Path], is_main: bool) -> List[logging.Handler]:
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers: List[logging.Handler] = []
    if is_main:
        handlers.append(logging.StreamHandler(sys.stdout))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(save_dir / LOG_FILE_NAME))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return handlers


def _teardown_logging(handlers: Sequence[logging.Handler]) -> None:
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()


def _log_warning(message, category, filename, lineno, file=None, line=None):
    logger.warning("%s: %s", category.__name__, message)


def _summary_writer(log_dir: Path):
    """A TensorBoard ``SummaryWriter``, or ``None`` when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _log_scalars(writer, prefix: str, values: Mapping[str, float], step: int) -> None:
    if writer is None:
        return
    for key, value in values.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            writer.add_scalar(f"{prefix}/{key}", value, step)


def _log_images(writer, samples: Optional[Tensor], step: int) -> None:
    if writer is None or samples is None:
        return
    from torchvision.utils import make_grid

    n = samples.size(0) // 3
    # One row each: original, full decode, protected decode.
    writer.add_image("val/original|full|protected", make_grid(samples, nrow=n), step)


# ----------------------------------------------------------------------------- main


def _progress(iterable, enabled: bool, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)


def _check_patch_size(args: argparse.Namespace, net: nn.Module) -> None:
    factor = int(getattr(net, "downsampling_factor", 1))
    if any(size % factor for size in args.patch_size):
        raise ValueError(
            f"--patch-size {args.patch_size[0]} {args.patch_size[1]}: "
            f"{net.architecture} needs multiples of {factor} (its latents are "
            f"1/{factor} of the image size)"
        )


def _warn_on_setup(args: argparse.Namespace, net: nn.Module) -> None:
    if args.stage == 2 and not (args.init or args.checkpoint):
        logger.warning(
            "Stage 2 from scratch: the rate path stays frozen at its random "
            "initialisation. Pass --init with a stage-1 or CompressAI checkpoint."
        )
    from ..models.registry import get_architecture

    anchored = get_architecture(net.architecture).anchor_full
    if args.stage == 2 and args.stage2_params == "triggers" and not anchored:
        logger.warning(
            f"{net.architecture} does not anchor its triggers at the full condition: "
            "training the trigger projections also changes the full decode"
        )


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Trains as ``args`` say; returns ``epoch``, ``step``, ``best_loss``, the
    paths written (``checkpoint``, ``best``, ``export``) and the last summaries."""
    ctx = setup_distributed(args.cuda)
    save_dir = Path(args.save_dir) if args.save else None
    handlers = _setup_logging(save_dir if ctx.is_main else None, ctx.is_main)
    try:
        with warnings.catch_warnings():
            # Warnings (e.g. skipped dataset files) go to the log file too.
            warnings.showwarning = _log_warning
            return _train(args, ctx, save_dir)
    except DatasetSampleError as err:
        # From a DataLoader worker the message holds the worker's traceback;
        # its last line is the error itself.
        lines = [line for line in str(err).splitlines() if line.strip()]
        logger.error(
            "%s. Fix or remove the file, or pass --on-error skip to skip "
            "unreadable samples.",
            lines[-1] if lines else type(err).__name__,
        )
        raise SystemExit(1) from err
    finally:
        _teardown_logging(handlers)
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    args: argparse.Namespace, ctx: DistributedContext, save_dir: Optional[Path]
) -> Dict[str, Any]:
    if args.seed is not None:
        random.seed(args.seed + ctx.rank)
        torch.manual_seed(args.seed + ctx.rank)
    logger.info(
        "PSIC training, stage %d, %d process(es), device %s",
        args.stage,
        ctx.world_size,
        ctx.device,
    )

    checkpoint = None
    if args.checkpoint:
        checkpoint = _load_resume(args.checkpoint, ctx.device)
    if checkpoint is not None:
        if int(checkpoint.get("stage", args.stage)) != args.stage:
            raise ValueError(
                f"{args.checkpoint} is a stage-{checkpoint['stage']} checkpoint; "
                f"resume it with --stage {checkpoint['stage']}, or start stage "
                f"{args.stage} from it with --init"
            )
        net = _model_from_resume(checkpoint, args.checkpoint)
        if args.model is not None and net.architecture != args.model:
            raise ValueError(
                f"--model {args.model} does not match {args.checkpoint} "
                f'("{net.architecture}")'
            )
    else:
        net = build_model(args)
    net = net.to(ctx.device).train()
    _check_patch_size(args, net)
    _warn_on_setup(args, net)
    trainable = set_trainable(net, args.stage, args.stage2_params)
    total = sum(p.numel() for p in net.parameters())
    count = sum(p.numel() for p in net.parameters() if p.requires_grad)
    logger.info(
        "Model %s: %d parameters, %d trainable (%d tensors)",
        net.architecture,
        total,
        count,
        len(trainable),
    )
    optimizer, aux_optimizer = configure_optimizers(
        net, args.learning_rate, args.aux_learning_rate, args.trigger_learning_rate
    )
    lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(args.milestones), gamma=args.gamma
    )
    start_epoch, step, best_loss = 0, 0, math.inf
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if aux_optimizer is not None and checkpoint.get("aux_optimizer"):
            aux_optimizer.load_state_dict(checkpoint["aux_optimizer"])
        lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        start_epoch = int(checkpoint["epoch"]) + 1
        step = int(checkpoint.get("step", 0))
        best_loss = float(checkpoint.get("best_loss", math.inf))
        logger.info(
            "Resumed %s at epoch %d, step %d", args.checkpoint, start_epoch, step
        )
        del checkpoint

    model: nn.Module = net
    if ctx.distributed:
        # Quantiles only get gradients from the aux loss, outside forward.
        model = DistributedDataParallel(
            net,
            device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=aux_optimizer is not None,
        )

    criterion = build_criterion(args, ctx.device)
    if isinstance(criterion, PSICLoss):
        logger.info("VLP: %s", criterion.vlp.name)
    train_set, val_set = build_datasets(args)
    seed = 0 if args.seed is None else args.seed
    train_loader, train_sampler = _loader(
        train_set, args.batch_size, ctx, args.num_workers, True, seed
    )
    val_loader = None
    if val_set is not None:
        val_loader, _ = _loader(
            val_set, args.test_batch_size, ctx, args.num_workers, False, seed
        )
    logger.info(
        "Data: %d training pairs, %s validation pairs (%s)",
        len(train_set),
        len(val_set) if val_set is not None else "no",
        args.dataset_format,
    )
    writer = None
    if ctx.is_main and save_dir is not None:
        writer = _summary_writer(save_dir / "tensorboard")
    session = _Session(
        net=net,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        aux_optimizer=aux_optimizer,
        lr_scheduler=lr_scheduler,
        train_set=train_set,
        train_loader=train_loader,
        train_sampler=train_sampler,
        val_loader=val_loader,
        writer=writer,
    )
    try:
        return _train_epochs(args, ctx, save_dir, session, start_epoch, step, best_loss)
    finally:
        if writer is not None:
            writer.close()


@dataclass
class _Session:
    """What the epoch loop works with."""

    net: nn.Module
    model: nn.Module  # ``net``, or its DistributedDataParallel wrapper
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: Optional[torch.optim.Optimizer]
    lr_scheduler: Any
    train_set: Dataset
    train_loader: DataLoader
    train_sampler: Optional[DistributedSampler]
    val_loader: Optional[DataLoader]
    writer: Any


def _train_epochs(
    args: argparse.Namespace,
    ctx: DistributedContext,
    save_dir: Optional[Path],
    session: _Session,
    start_epoch: int,
    step: int,
    best_loss: float,
) -> Dict[str, Any]:
    net, model, criterion = session.net, session.model, session.criterion
    optimizer, aux_optimizer = session.optimizer, session.aux_optimizer
    train_set, train_loader = session.train_set, session.train_loader
    train_sampler, val_loader = session.train_sampler, session.val_loader
    lr_scheduler, writer = session.lr_scheduler, session.writer
    show_progress = ctx.is_main and sys.stderr.isatty()
    max_steps = args.max_steps if args.max_steps is not None else math.inf
    plain_args = _plain(vars(args))
    last_epoch = start_epoch - 1
    train_summary: Dict[str, float] = {}
    val_summary: Dict[str, float] = {}
    last_path = best_path = export_path = None
    for epoch in range(start_epoch, args.epochs):
        if step >= max_steps:
            break
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        totals = MetricTotals()
        started = time.perf_counter()
        bar = _progress(train_loader, show_progress, desc=f"epoch {epoch}")
        for images, captions in bar:
            images = images.to(ctx.device, non_blocking=True)
            terms = train_step(
                model,
                criterion,
                images,
                captions,
                optimizer,
                aux_optimizer,
                paths=args.paths,
                clip_max_norm=args.clip_max_norm,
            )
            step += 1
            totals.update(terms)
            if show_progress:
                bar.set_postfix(loss=f"{terms['loss']:.4g}", step=step)
            if step % args.log_every == 0:
                logger.info("step %d: %s", step, _format(terms))
                _log_scalars(writer, "train_step", terms, step)
            if step >= max_steps:
                break
        elapsed = time.perf_counter() - started
        totals.all_reduce(ctx.device)
        train_summary = totals.summary()
        train_summary["images_per_s"] = train_summary["images"] / max(elapsed, 1e-9)
        train_summary["lr"] = optimizer.param_groups[0]["lr"]
        logger.info(
            "epoch %d train (step %d, %.1f img/s, lr %.3g): %s",
            epoch,
            step,
            train_summary["images_per_s"],
            train_summary["lr"],
            _format(train_summary),
        )
        skipped = getattr(train_set, "skipped", 0)
        if skipped:
            logger.warning("%d unreadable training sample(s) skipped so far", skipped)
        samples = None
        if val_loader is not None:
            val_summary, samples = validate(model, criterion, val_loader, ctx)
            logger.info("epoch %d val: %s", epoch, _format(val_summary))
            epoch_loss = val_summary.get("loss", math.inf)
        else:
            epoch_loss = train_summary.get("loss", math.inf)
        _log_scalars(writer, "train", train_summary, epoch)
        _log_scalars(writer, "val", val_summary, epoch)
        _log_images(writer, samples, epoch)
        lr_scheduler.step()

        is_best = epoch_loss < best_loss
        best_loss = min(best_loss, epoch_loss)
        if ctx.is_main and save_dir is not None:
            net.update(force=True)
            state = {
                "epoch": epoch,
                "step": step,
                "state_dict": net.state_dict(),
                "loss": epoch_loss,
                "best_loss": best_loss,
                "optimizer": optimizer.state_dict(),
                "aux_optimizer": (
                    aux_optimizer.state_dict() if aux_optimizer else None
                ),
                "lr_scheduler": lr_scheduler.state_dict(),
                "stage": args.stage,
                "architecture": net.architecture,
                "args": plain_args,
            }
            last_path = save_checkpoint(state, is_best, save_dir)
            if is_best:
                best_path = save_dir / BEST_CHECKPOINT_NAME
            logger.info("Saved %s%s", last_path, " (best so far)" if is_best else "")
        if writer is not None:
            writer.flush()
        last_epoch = epoch

    if args.export is not None and ctx.is_main:
        best_file = save_dir / BEST_CHECKPOINT_NAME if save_dir else None
        if best_file is not None and best_file.is_file():
            from ..utils import load_torch_file

            best_state = load_torch_file(best_file, map_location=ctx.device)
            net.load_state_dict(best_state["state_dict"])
        name = args.export or f"psic-{net.architecture.replace('psic-', '')}"
        if not args.export:
            name += f"-stage{args.stage}"
        export_path = export_state_dict(net, args.save_dir, name)
        logger.info("Exported %s", export_path)
    if save_dir is not None and best_path is None:
        candidate = save_dir / BEST_CHECKPOINT_NAME
        best_path = candidate if candidate.is_file() else None
    return {
        "epoch": last_epoch,
        "step": step,
        "best_loss": best_loss,
        "checkpoint": last_path,
        "best": best_path,
        "export": export_path,
        "train": train_summary,
        "val": val_summary,
    }


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Command-line entry point (``python -m compressai_psic.train``)."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
