"""Tests of compressai_psic.train.steps: the training step, the paths drawn per
sample, and validation."""

from __future__ import annotations

import torch

from compressai_psic import zoo
from compressai_psic.losses import PSICLoss
from compressai_psic.train import (
    configure_optimizers,
    train_step,
)
from compressai_psic.vlp import tiny_vlp


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    net = zoo.bmshj2018_factorized(1, N=16, M=24).train()
    criterion = PSICLoss(tiny_vlp(), lmbda_full=0.01, lmbda_protected=0.01)
    optimizer, aux_optimizer = configure_optimizers(net, 1e-3, 1e-3)
    images = torch.rand(4, 3, 32, 32)
    captions = ["a red circle", "two blue stars", "a green cross", "a white ring"]
    losses = [
        train_step(net, criterion, images, captions, optimizer, aux_optimizer, "both")
        for _ in range(30)
    ]
    assert {"loss", "bpp_loss", "vlp_loss", "aux_loss", "num_clean"} <= set(losses[0])
    first = losses[0]["loss"]
    last = sum(step["loss"] for step in losses[-3:]) / 3
    assert last < 0.7 * first


def test_paths_are_drawn_per_sample_from_the_generator():
    from compressai_psic.train.steps import draw_paths

    first = draw_paths(64, torch.device("cpu"), torch.Generator().manual_seed(1))
    again = draw_paths(64, torch.device("cpu"), torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and first.shape == (64,)
    assert set(first.tolist()) == {0.0, 1.0}  # both paths, about half each
    assert 16 < first.sum() < 48


def test_validation_is_deterministic_and_returns_both_decodes():
    from compressai_psic.train.distributed import DistributedContext
    from compressai_psic.train.steps import validate

    torch.manual_seed(0)
    net = zoo.bmshj2018_factorized(1, N=16, M=24).train()
    criterion = PSICLoss(tiny_vlp(), lmbda_full=0.01, lmbda_protected=0.01)
    images = torch.rand(3, 3, 32, 32)
    loader = [(images, ["a red circle", "two blue stars", "a green cross"])]
    summary, samples = validate(net, criterion, loader, DistributedContext(), 2)
    again, _ = validate(net, criterion, loader, DistributedContext(), 2)
    assert summary == again and net.training  # the mode is given back
    assert summary["images"] == 3 and "psnr_full" in summary
    assert samples.shape == (6, 3, 32, 32)
    assert torch.equal(samples[:2], images[:2])
