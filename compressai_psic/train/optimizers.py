"""What trains in each stage, and the optimisers over it."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from .constants import STAGE2_PARAMS
from .distributed import unwrap

__all__ = ["configure_optimizers", "set_trainable", "split_parameters"]


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
