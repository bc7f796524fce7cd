r"""Keyed protection: the protected decode as a full decode of a keyed latent.

The protected path of PSIC (`"Privacy-Shielded Image Compression…"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025) is a second synthesis steered by
a public condition; anyone holding the decoder inverts it in about a second per
image (fit a latent through the protected path, decode it full). A keyed model
decodes its protected image on the *full* path instead, from a latent moved by a
learned, key-dependent shift:

.. code-block:: none

    ŷ ──────────────┬──────────────────────────────► g_s(ŷ, full)      full decode
                    │ noise(key, bitstream)
                    ▼      │
              Δ = shift(ŷ, noise) ──► ŷ + Δ ─────────► g_s(ŷ + Δ, full) protected

- No path of the public model tells the protected decode from a natural one:
  fitting a latent through the full path gives the protected image back, with
  nothing to explain away.
- The noise is secret (it needs the publisher's key and the bitstream,
  :mod:`~compressai_psic.models.keys`), new for every image, and high-dimensional
  (``noise_channels`` per latent position): what an attacker must search for is
  not a trigger vector but a field.
- The full path never sees the key: it stays the anchored synthesis of the model.

Training (:mod:`compressai_psic.train.keyed`) draws a fresh noise per sample, so
the shift has to fool the VLPs under every key, and penalises the likeness of two
keys' changes so that one key's change does not cancel another's.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["KeyedLatentShift"]


class KeyedLatentShift(nn.Module):
    r"""``Δ(ŷ, noise)``: three 3×3 convolutions with GELUs on ``[ŷ, noise]``.

    Args:
        latent_channels: channels of ``ŷ`` (M)
        noise_channels: channels of the key noise (K)
        hidden: width of the hidden layers

    The last layer starts at a tenth of its default initialisation, so a fresh
    shift moves the latent little.
    """

    def __init__(
        self, latent_channels: int, noise_channels: int = 32, hidden: int = 192
    ):
        super().__init__()
        if min(latent_channels, noise_channels, hidden) < 1:
            raise ValueError(
                "KeyedLatentShift needs positive latent_channels, noise_channels and "
                f"hidden, got {latent_channels}, {noise_channels}, {hidden}"
            )
        self.latent_channels = int(latent_channels)
        self.noise_channels = int(noise_channels)
        self.net = nn.Sequential(
            nn.Conv2d(latent_channels + noise_channels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, latent_channels, 3, padding=1),
        )
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()

    @staticmethod
    def config_from_state_dict(
        state_dict: Dict[str, Tensor], prefix: str
    ) -> Dict[str, int]:
        """``latent_channels``, ``noise_channels`` and ``hidden`` of the shift whose
        weights lie under ``prefix`` (e.g. ``"key_shift."``)."""
        first = state_dict[prefix + "net.0.weight"]
        last = state_dict[prefix + "net.4.weight"]
        latent = int(last.size(0))
        return {
            "latent_channels": latent,
            "noise_channels": int(first.size(1)) - latent,
            "hidden": int(first.size(0)),
        }

    def forward(self, y_hat: Tensor, noise: Tensor) -> Tensor:
        if noise.shape[0] != y_hat.shape[0] or noise.shape[2:] != y_hat.shape[2:]:
            raise ValueError(
                f"key noise of shape {tuple(noise.shape)} does not fit a latent of "
                f"shape {tuple(y_hat.shape)}"
            )
        return self.net(torch.cat([y_hat, noise.to(y_hat.dtype)], dim=1))

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, "
            f"noise_channels={self.noise_channels}"
        )
