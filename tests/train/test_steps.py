"""Tests of compressai_psic.train.steps: the training step."""

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
