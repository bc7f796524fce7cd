"""The training run: setup, the epoch loop with its checkpoints, and the entry
point ``main``."""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..datasets import DatasetSampleError
from ..losses import PSICLoss
from .arguments import parse_args
from .checkpoints import (
    _load_resume,
    _model_from_resume,
    _plain,
    export_state_dict,
    save_checkpoint,
)
from .constants import BEST_CHECKPOINT_NAME
from .criterion import build_criterion
from .data import _loader, build_datasets
from .distributed import DistributedContext, setup_distributed
from .logs import (
    _log_images,
    _log_scalars,
    _log_warning,
    _setup_logging,
    _summary_writer,
    _teardown_logging,
    logger,
)
from .metrics import MetricTotals, _format
from .model import build_model
from .optimizers import configure_optimizers, set_trainable
from .steps import train_step, validate

__all__ = ["main", "run"]


def _progress(iterable, enabled: bool, **kwargs):
    """A tqdm bar on stderr when ``enabled`` (rank 0 on a terminal).

    A terminal that reports no size (some pseudo-terminals, a terminal
    multiplexer starting up) gets a bar 100 columns wide instead of an empty one.
    """
    from tqdm import tqdm

    columns, lines = shutil.get_terminal_size((0, 0))
    sized = min(columns, lines) > 0
    size = {"dynamic_ncols": True} if sized else {"ncols": 100, "nrows": 20}
    return tqdm(iterable, disable=not enabled, file=sys.stderr, **size, **kwargs)


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

    # The data first: a wrong folder fails before a VLP is downloaded.
    logger.info("Reading the dataset (%s)", args.dataset_format)
    train_set, val_set = build_datasets(args)
    if args.lambda_vlp != 0:
        logger.info("Loading the VLP: %s", " + ".join(args.vlp))
    criterion = build_criterion(args, ctx.device)
    if isinstance(criterion, PSICLoss):
        logger.info("VLP: %s", criterion.vlp.name)
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
            from ..state_dicts import load_torch_file

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
