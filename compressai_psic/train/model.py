"""The shielded model to train: from ``--init`` (zoo weights or a checkpoint) or
from scratch."""

from __future__ import annotations

import argparse

import torch.nn as nn

from .constants import _PSIC_HY2018, _PSIC_HY2018_CHANNELS, DEFAULT_MODEL

__all__ = ["build_model"]


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
    try:
        base = cai_zoo.image_models[name](quality, metric=metric, pretrained=True)
    except OSError as err:  # urllib's URLError when offline
        reason = " ".join(str(getattr(err, "reason", err)).split())
        raise ValueError(
            f"--init {spec}: cannot download CompressAI's {name} weights "
            f"({reason}). Offline, copy the file CompressAI downloads into "
            "torch's hub cache (~/.cache/torch/hub/checkpoints/), or pass it "
            "directly: --init /path/to/weights.pth.tar"
        ) from err
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
        modulation = getattr(args, "modulation", None)
        if (args.plan is not None and args.plan != model.plan) or (
            modulation is not None and modulation != model.modulation
        ):
            model = shield(model, plan=args.plan, modulation=modulation)
        return model
    name = args.model or DEFAULT_MODEL
    kwargs = {} if args.plan is None else {"plan": args.plan}
    if getattr(args, "modulation", None) is not None:
        kwargs["modulation"] = args.modulation
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
