"""Helpers of the training tool's tests: the options of a tiny, fast run and
parameter snapshots."""

from __future__ import annotations

import torch

__all__ = ["FAST", "TINY", "changed", "params"]

# Tiny hyperprior: 64×64 patches are the smallest its 1/64 hyper-latents allow.
TINY = ["--N", "16", "--M", "24", "--patch-size", "64", "64"]
FAST = [
    "--vlp",
    "tiny",
    "--batch-size",
    "4",
    "--test-batch-size",
    "4",
    "-n",
    "0",
    "--max-steps",
    "2",
    "--seed",
    "0",
    "--log-every",
    "1",
    "--no-cuda",
]


def params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}
