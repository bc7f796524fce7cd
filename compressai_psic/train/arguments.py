"""The command line of ``python -m compressai_psic.train``: flags and their
completion (stage defaults, λs, VLP specs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import OneLineArgumentParser
from ..options import CROP_MODES, DEFAULT_TAU, ENSEMBLE_MODES, FEATURE_STAGES, ON_ERROR
from .constants import (
    _PSIC_HY2018,
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    DATASET_FORMATS,
    DEFAULT_LAMBDA,
    DEFAULT_MODEL,
    DEFAULT_VLP,
    EOT_CHOICES,
    PATH_MODES,
    STAGE2_PARAMS,
    STAGE_DEFAULTS,
    VLP_PRECISIONS,
)

__all__ = ["build_parser", "dataset_problem", "parse_args", "save_dir_problem"]


def _model_choices() -> List[str]:
    from ..zoo import image_models

    return list(image_models) + [_PSIC_HY2018]


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (CompressAI's ``examples/train.py`` flags + PSIC's)."""
    parser = OneLineArgumentParser(
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
    model.add_argument(
        "--modulation",
        choices=("bias", "affine"),
        default=None,
        help="how a trigger acts: 'bias' (the paper, default for new models) or "
        "'affine' (per-channel scale and bias: image-dependent changes); with "
        "--init, converts the loaded model (bias weights are kept)",
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
        "--lambda-common",
        type=float,
        default=0.0,
        help="weight of 255²·mean square of the batch mean of (protected − full): "
        "the change every image shares costs, so protection depends on the "
        "image (needs --paths both) (default 0)",
    )
    stage.add_argument(
        "--lambda-feature",
        type=float,
        default=0.0,
        help="weight of 1 + cos of the --feature-stage features of the protected "
        "decode and the original, on every ResNet-tower --vlp: feature disruption, "
        "which transfers to unseen VLPs (default 0)",
    )
    stage.add_argument(
        "--feature-stage",
        choices=FEATURE_STAGES,
        default="layer3",
        help="ResNet stage of --lambda-feature (default layer3)",
    )
    stage.add_argument(
        "--lambda-masked",
        type=float,
        default=0.0,
        help="weight of 255²·mean of w·(protected − full)², w large on flat areas "
        "of the original and small in texture: the change hides where a person "
        "does not see it (needs --paths both) (default 0)",
    )
    stage.add_argument(
        "--lambda-periodic",
        type=float,
        default=0.0,
        help="weight of 255²·energy of (protected − full) at the frequencies of "
        "the synthesis' 16-pixel stride lattice: no visible grid (needs --paths "
        "both) (default 0)",
    )
    stage.add_argument(
        "--ensemble",
        choices=ENSEMBLE_MODES,
        default="mean",
        help="how the --vlp members' UAEO losses combine: weighted mean, or "
        "balanced (each member's gradient divided by its own loss, so every member "
        "falls) (default mean)",
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
        "'clip:NAME[:ROOT]', the VLPs shipped with the package (offline): 'demo' "
        "or 'train-ensemble' (demo-vlp and the three train-vlp-* models, small "
        "CLIPs of the scene benchmark), 'zoo:NAME' (a VLP of the manifest) or "
        "'tiny[:SEED]' (tests); the evaluation VLPs eval-rn/eval-vit are refused "
        f"(default {DEFAULT_VLP}: downloads its weights)",
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
        "-n",
        "--num-workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="data workers (default: 4, or the number of CPU cores if fewer)",
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
        default=None,
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
    run.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="replace the checkpoints of an earlier run in --save-dir (refused "
        "otherwise, unless --checkpoint resumes that run)",
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


def save_dir_problem(
    save_dir: str, checkpoint: Optional[str], force: bool
) -> Optional[str]:
    """Why ``--save-dir`` cannot take this run (``None`` when it can).

    A run writes ``checkpoint.pth.tar`` and ``checkpoint_best_loss.pth.tar``
    there: an earlier run's files would be replaced, and its best checkpoint
    could be taken for this run's. Allowed when ``force`` says to replace them,
    or when ``checkpoint`` resumes from that folder (the same run, going on).
    """
    folder = Path(save_dir)
    if folder.exists() and not folder.is_dir():
        return f"--save-dir {save_dir}: exists and is not a folder"
    if force or not folder.is_dir():
        return None
    if checkpoint is not None and Path(checkpoint).resolve().parent == folder.resolve():
        return None
    for name in (CHECKPOINT_NAME, BEST_CHECKPOINT_NAME):
        if (folder / name).exists():
            return (
                f"--save-dir {save_dir} holds an earlier run's {name}: resume it "
                f"with --checkpoint {folder / CHECKPOINT_NAME}, replace it with "
                "-f/--force, or choose another --save-dir"
            )
    return None


def dataset_problem(root: str, dataset_format: str) -> Optional[str]:
    """Why ``-d`` cannot be read as ``--dataset-format`` (``None`` when it can
    or when the data stage will say it better), found before any model or VLP
    loads: a folder without ``captions.txt`` read as flickr8k (the default)."""
    if (
        dataset_format == "flickr8k"
        and os.path.isdir(root)
        and not os.path.isfile(os.path.join(root, "captions.txt"))
    ):
        return (
            f"-d {root} has no captions.txt, so it is no flickr8k folder "
            "(--dataset-format flickr8k is the default). Images without captions: "
            f"--dataset-format imagefolder --lambda-vlp 0 ({root}/train and "
            f"{root}/test, CompressAI's layout); captioned images listed in a file: "
            "--dataset-format list"
        )
    return None


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
    if args.dataset is not None:
        problem = dataset_problem(args.dataset, args.dataset_format)
        if problem:
            parser.error(problem)
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
    lambdas += (args.lambda_lowfreq, args.lambda_common)
    lambdas += (args.lambda_feature, args.lambda_masked, args.lambda_periodic)
    if args.lambda_vlp < 0 or min(lambdas) < 0:
        parser.error("λ values must be non-negative")
    if args.lowfreq_kernel < 1:
        parser.error("--lowfreq-kernel must be >= 1")
    from ..vlp.specs import evaluation_only_spec

    refused = [spec for spec in args.vlp if evaluation_only_spec(spec)]
    if refused:
        parser.error(
            f"--vlp {refused[0]}: evaluation VLPs measure protection and are never "
            "trained against; use 'demo', 'train-ensemble' or 'zoo:train-vlp-*'"
        )
    import torch

    from .criterion import build_eot

    try:
        build_eot(args.eot)
    except ValueError as err:
        parser.error(str(err))
    if args.checkpoint and args.init:
        parser.error("--checkpoint resumes a run; it cannot be combined with --init")
    if args.save:
        problem = save_dir_problem(args.save_dir, args.checkpoint, args.force)
        if problem:
            parser.error(problem)
    if args.init and (args.N is not None or args.M is not None):
        parser.error("--N/--M apply to models built from scratch, not to --init")
    if args.cuda is None:
        args.cuda = torch.cuda.is_available()
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda was given but CUDA is not available (use --no-cuda)")
    return args
