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

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["FORMS", "KeyedLatentShift"]


#: How the key noise enters the shift: ``"mix"`` (the default) makes the shift
#: linear in the noise, ``Δ = Σ_k a_k(ŷ)·n_k``, so its mean over keys is zero by
#: construction and no part of it can be computed without the key; ``"concat"``
#: feeds ``[ŷ, noise]`` to the network, which learns a change that mostly
#: ignores the key (measured: an own-key inversion then gives everything back).
FORMS = ("mix", "concat")


class KeyedLatentShift(nn.Module):
    r"""``Δ(ŷ, noise)``: three 3×3 convolutions with GELUs.

    ``form="mix"``: the network sees ``ŷ`` and gives ``K`` direction fields
    ``a_k(ŷ)`` (each of ``M`` channels); the shift is their combination with the
    key noise, ``Σ_k a_k(ŷ)·n_k`` at every latent position. ``form="concat"``:
    the network sees ``[ŷ, noise]`` and gives the shift.

    Args:
        latent_channels: channels of ``ŷ`` (M)
        noise_channels: channels of the key noise (K)
        hidden: width of the hidden layers
        form: ``"mix"`` or ``"concat"``

    The last layer starts at a tenth of its default initialisation, so a fresh
    shift moves the latent little. The form is written in the state dict
    (``_extra_state``).
    """

    def __init__(
        self,
        latent_channels: int,
        noise_channels: int = 32,
        hidden: int = 192,
        form: str = "mix",
    ):
        super().__init__()
        if min(latent_channels, noise_channels, hidden) < 1:
            raise ValueError(
                "KeyedLatentShift needs positive latent_channels, noise_channels and "
                f"hidden, got {latent_channels}, {noise_channels}, {hidden}"
            )
        if form not in FORMS:
            raise ValueError(f'Invalid form "{form}": use one of {list(FORMS)}')
        self.latent_channels = int(latent_channels)
        self.noise_channels = int(noise_channels)
        self.form = form
        inputs = latent_channels + (noise_channels if form == "concat" else 0)
        outputs = latent_channels * (noise_channels if form == "mix" else 1)
        self.net = nn.Sequential(
            nn.Conv2d(inputs, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, outputs, 3, padding=1),
        )
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()

    def get_extra_state(self) -> Dict[str, str]:
        return {"form": self.form}

    def set_extra_state(self, state: Any) -> None:
        form = state.get("form") if isinstance(state, dict) else None
        if form != self.form:
            raise ValueError(
                f"The weights are a {form!r} keyed shift, this module {self.form!r}"
            )

    @staticmethod
    def config_from_state_dict(
        state_dict: Mapping[str, Any], prefix: str
    ) -> Dict[str, Any]:
        """``latent_channels``, ``noise_channels``, ``hidden`` and ``form`` of the
        shift whose weights lie under ``prefix`` (e.g. ``"key_shift."``)."""
        first = state_dict[prefix + "net.0.weight"]
        last = state_dict[prefix + "net.4.weight"]
        extra = state_dict.get(prefix + "_extra_state")
        form = extra.get("form") if isinstance(extra, dict) else "concat"
        if form == "mix":
            latent = int(first.size(1))
            noise = int(last.size(0)) // latent
        else:
            latent = int(last.size(0))
            noise = int(first.size(1)) - latent
        return {
            "latent_channels": latent,
            "noise_channels": noise,
            "hidden": int(first.size(0)),
            "form": form,
        }

    def forward(self, y_hat: Tensor, noise: Tensor) -> Tensor:
        if noise.shape[0] != y_hat.shape[0] or noise.shape[2:] != y_hat.shape[2:]:
            raise ValueError(
                f"key noise of shape {tuple(noise.shape)} does not fit a latent of "
                f"shape {tuple(y_hat.shape)}"
            )
        noise = noise.to(y_hat.dtype)
        if self.form == "concat":
            return self.net(torch.cat([y_hat, noise], dim=1))
        batch, _, height, width = y_hat.shape
        fields = self.net(y_hat).view(
            batch, self.noise_channels, self.latent_channels, height, width
        )
        return (fields * noise[:, :, None]).sum(1)

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, "
            f"noise_channels={self.noise_channels}, form={self.form}"
        )
