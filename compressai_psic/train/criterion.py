"""The training loss: PSIC's (against the ``--vlp`` models) or rate–distortion
only, and the ``--eot`` scraper transforms it sees through."""

from __future__ import annotations

import argparse
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..losses import DualPathRateDistortionLoss, PSICLoss
from .constants import EOT_CHOICES

__all__ = ["build_criterion", "build_eot", "compute_loss"]


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
    try:
        vlp = build_vlp(
            args.vlp,
            device=device,
            cache_dir=args.vlp_cache_dir,
            autocast=args.vlp_precision != "fp32",
        )
    except (OSError, RuntimeError) as err:  # downloads fail with either
        reason = " ".join(str(err).split())
        raise ValueError(
            f"cannot load --vlp {' '.join(args.vlp)} ({reason}). Offline, pass a "
            "local weights file (--vlp open_clip:ViT-B-32:/path/ViT-B-32.pt), a "
            "VLP shipped with the package (--vlp demo or train-ensemble), or "
            "--lambda-vlp 0 to train rate-distortion only"
        ) from err
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
        lmbda_common=args.lambda_common,
        lmbda_feature=args.lambda_feature,
        feature_stage=args.feature_stage,
        lmbda_masked=args.lambda_masked,
        lmbda_periodic=args.lambda_periodic,
        ensemble=args.ensemble,
        transform=build_eot(args.eot, args.seed),
    )


def build_eot(spec: str, seed: Optional[int] = None) -> Optional[nn.Module]:
    """The ``--eot`` transform: one of the named scraper transforms per image."""
    if spec in ("", "none"):
        return None
    from ..transforms import (
        RandomScraperTransform,
        default_scraper_transforms,
        purification_transforms,
    )

    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(EOT_CHOICES))
    if unknown or not names:
        raise ValueError(
            f"Invalid --eot {spec!r}: use names from {list(EOT_CHOICES)} or 'none'"
        )
    choices = {**default_scraper_transforms(), **purification_transforms()}
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
