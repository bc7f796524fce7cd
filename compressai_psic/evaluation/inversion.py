r"""The adaptive attacker: a restoration network trained on the public codec.

The decoder of a shielded codec (`"Privacy-Shielded Image Compression…"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025) is public, and so is the unlock
condition. An attacker who wants the meaning back from *published* protected
decodes (of images it does not have) compresses images of its own, decodes both
paths, and trains a network that maps protected decodes to full ones:

.. code-block:: none

    attacker's images ──► codec.compress ──► decompress(protected) ─┐
                                          └► decompress(full) ──────┴► pairs
    pairs ──► RestorationCNN (residual, MSE) ──► InversionAttack
    published protected decode ──► InversionAttack ──► VLP

:func:`train_inversion` does this under a stated budget (pairs, steps, wall
time) on scenes that must be disjoint from the evaluated ones;
:class:`InversionAttack` plugs the result into
:func:`~compressai_psic.evaluation.evaluate_shield` like any other attack, and
:func:`recovered_share` tells how much of the recall the shield took away it
gives back.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attacks import Attack
from .codec import codec_batches, prepare_codec

__all__ = [
    "InversionAttack",
    "RestorationCNN",
    "recovered_share",
    "train_inversion",
]


class RestorationCNN(nn.Module):
    r"""A plain residual CNN: ``layers`` 3×3 convolutions of ``channels``
    channels with ReLUs between them; the output is added to the input.

    Args:
        channels: width of the hidden layers
        layers: number of convolutions (at least 2)
    """

    def __init__(self, channels: int = 48, layers: int = 7):
        super().__init__()
        if layers < 2 or channels < 1:
            raise ValueError(
                f"Need layers >= 2 and channels >= 1, got {layers}, {channels}"
            )
        modules = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            modules += [
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
        modules.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.body = nn.Sequential(*modules)
        # Start as the identity: the residual branch outputs zero.
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class InversionAttack(Attack):
    """A trained :class:`RestorationCNN` as an attack on published decodes."""

    def __init__(self, network: nn.Module, info: Optional[Mapping[str, Any]] = None,
                 name: str = "inversion"):  # fmt: skip
        super().__init__(name)
        self.network = network.eval()
        self.info = dict(info or {})

    @torch.no_grad()
    def apply(self, images: Tensor) -> Tensor:
        device = next(self.network.parameters()).device
        out = self.network(images.to(device)).to(images.device)
        return out.clamp(0, 1)

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "trained": self.info}


def train_inversion(
    codec: nn.Module,
    dataset: Any,
    num_pairs: int = 2000,
    steps: int = 3000,
    max_seconds: Optional[float] = None,
    batch_size: int = 32,
    crop_size: Optional[int] = 32,
    learning_rate: float = 1e-3,
    channels: int = 32,
    layers: int = 7,
    target: str = "full",
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    key: Any = None,
) -> InversionAttack:
    r"""Trains the attacker's restoration network and returns it as an attack.

    Args:
        codec: the public shielded codec
        dataset: the attacker's own images (``len``, ``load_image(i)``): must
            share no image with the evaluated set
        num_pairs: images compressed into (protected, full) pairs
        steps: optimisation steps (Adam, cosine-decayed learning rate)
        max_seconds: stop training after this wall time (the budget), if given
        batch_size: pairs per step
        crop_size: train on random aligned crops of this size (the network is
            fully convolutional; ``None``: whole images)
        learning_rate: Adam's initial learning rate
        channels: width of :class:`RestorationCNN`
        layers: depth of :class:`RestorationCNN`
        target: ``"full"`` (the attacker decodes the full path itself) or
            ``"original"`` (it trains towards its originals)
        seed: seed of initialisation and batch order
        device: where the network trains
        progress: show progress bars
        key: for a keyed codec, the attacker's own key, or a function giving
            a fresh one per codec call (it never has the publisher's)

    Returns:
        an :class:`InversionAttack` whose ``info`` states the budget: pairs,
        steps run, seconds (pair making and training), final training MSE
    """
    from tqdm import tqdm

    if target not in ("full", "original"):
        raise ValueError(
            f"Invalid target \"{target}\": use one of ['full', 'original']"
        )
    total = min(int(num_pairs), len(dataset))
    if total < 1 or steps < 1 or batch_size < 1:
        raise ValueError("Need at least one pair, one step and a batch of one")
    start = time.perf_counter()
    codec_device = next(codec.parameters()).device
    codec = prepare_codec(codec, codec_device)
    inputs, targets = [], []
    bar = tqdm(total=total, desc="inversion pairs", unit="img", disable=not progress)
    with torch.inference_mode():
        for indices, originals, decoded, _ in codec_batches(
            codec, dataset, total, None, 50, codec_device, key
        ):
            inputs.append(decoded["protected"])
            targets.append(decoded["full"] if target == "full" else originals)
            bar.update(len(indices))
    bar.close()
    inputs_t, targets_t = torch.cat(inputs), torch.cat(targets)
    pair_seconds = time.perf_counter() - start

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = RestorationCNN(channels, layers).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    train_start = time.perf_counter()
    loss_value, done = float("nan"), 0
    bar = tqdm(total=steps, desc="inversion training", disable=not progress)
    network.train()
    for step in range(1, steps + 1):
        done = step
        batch = torch.randint(inputs_t.size(0), (batch_size,), generator=generator)
        x, y = _crops(inputs_t[batch], targets_t[batch], crop_size, generator)
        x, y = x.to(device), y.to(device)
        loss = F.mse_loss(network(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        loss_value = float(loss.detach())
        bar.update(1)
        if max_seconds is not None and time.perf_counter() - train_start > max_seconds:
            break
    bar.close()
    info = {
        "pairs": total,
        "target": target,
        "steps": done,
        "batch_size": batch_size,
        "crop_size": crop_size,
        "channels": channels,
        "layers": layers,
        "parameters": sum(p.numel() for p in network.parameters()),
        "pair_seconds": round(pair_seconds, 1),
        "train_seconds": round(time.perf_counter() - train_start, 1),
        "final_mse": loss_value,
        "threads": torch.get_num_threads(),
    }
    return InversionAttack(network.cpu(), info)


def _crops(
    inputs: Tensor, targets: Tensor, size: Optional[int], generator: torch.Generator
):
    """The same random ``size``×``size`` crop of every pair of a batch."""
    height, width = inputs.shape[-2:]
    if size is None or (size >= height and size >= width):
        return inputs, targets
    size_h, size_w = min(size, height), min(size, width)
    top = int(torch.randint(height - size_h + 1, (), generator=generator))
    left = int(torch.randint(width - size_w + 1, (), generator=generator))
    window = (..., slice(top, top + size_h), slice(left, left + size_w))
    return inputs[window], targets[window]


def recovered_share(
    original: float, protected: float, attacked: float
) -> Optional[float]:
    r"""Share of the recall the shield took away that an attack gives back:
    ``(attacked − protected) / (original − protected)``; ``None`` when the
    shield took nothing away."""
    lost = original - protected
    if lost <= 1e-9:
        return None
    return (attacked - protected) / lost
