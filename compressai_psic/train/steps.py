"""One optimisation step on a batch, and deterministic validation."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor
from torch.utils.data import DataLoader

from .constants import PATH_MODES
from .criterion import compute_loss
from .distributed import DistributedContext, unwrap
from .metrics import MetricTotals, _scalars

__all__ = ["draw_paths", "train_step", "validate"]


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
