"""Training and validation data: the datasets of ``--dataset-format`` and their
(distributed) loaders."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, Dict, Optional, Tuple

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..datasets import (
    CaptionListDataset,
    Flickr8kCaptions,
    RateDistortionImages,
    SceneCaptions,
    collate_captions,
)
from .constants import DATASET_FORMATS
from .distributed import DistributedContext

__all__ = ["build_datasets"]


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
