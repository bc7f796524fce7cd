r"""Attackers who hold the model: inversion of published decodes through it.

Everything of a shielded codec but the publisher's key is public. Given a
published protected decode ``x_p`` and the decoder, an attacker fits a latent
``y`` (started at ``g_a(x_p)``) so that a decode it can parameterise reproduces
``x_p``, then publishes the *full* decode of that latent:

.. code-block:: none

    x_p ──► g_a ──► y₀ ──► argmin_{y, θ} ‖decode_θ(y) − x_p‖²  (Adam) ──► g_s(y, full)

``θ`` is what the attacker searches besides the latent; one mode per search
(:data:`LATENT_MODES`):

================== ==========================================================
mode               decode_θ(y) the fit goes through
================== ==========================================================
``public``         ``g_s(y, protected)``: the public trigger (unkeyed models)
``full-path``      ``g_s(y, full)``: no trigger at all
``free-trigger``   ``g_s(y, t)`` with a free trigger vector ``t`` per image
``free-modulation`` ``g_s`` with free per-point changes (bias, or scale and
                   bias) per image: the whole modulation space
``own-key``        ``g_s(y + Δ(y, n), full)``, ``n`` the noise of a key of the
                   attacker's own (keyed models)
``free-key``       the same with ``n`` searched too (keyed models)
================== ==========================================================

Searches start at zero (``start="zero"``) or at random values of the size the
model's own values have (``"random"``); with several ``starts`` the attacker
keeps, per image, the fit that reproduces ``x_p`` best, which it can compute.
A mode that the model does not have (``public`` on a keyed model, the key modes
on an unkeyed one) raises ``ValueError``.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attacks import Attack

__all__ = ["LATENT_MODES", "LatentInversionAttack", "latent_attacks_for"]

#: The searches of :class:`LatentInversionAttack`.
LATENT_MODES = (
    "public",
    "full-path",
    "free-trigger",
    "free-modulation",
    "own-key",
    "free-key",
)
_STARTS = ("zero", "random")


class LatentInversionAttack(Attack):
    r"""Fits a latent (and the searched part) through the public model.

    It needs autograd and runs under ``torch.inference_mode(False)`` whatever
    the caller's mode.

    Args:
        model: the public shielded codec
        mode: one of :data:`LATENT_MODES`
        steps: Adam steps per image batch (300 in the reports)
        learning_rate: Adam's learning rate
        start: ``"zero"`` or ``"random"`` start of the searched part
        starts: restarts (random starts draw anew each time); the best fit per
            image is kept
        batch_size: images fitted at once
        seed: seed of the random starts and of the attacker's keys
        name: the attack's name (default ``latent-<mode>[-random]``)
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str,
        steps: int = 300,
        learning_rate: float = 0.05,
        start: str = "zero",
        starts: int = 1,
        batch_size: int = 100,
        seed: int = 0,
        name: Optional[str] = None,
    ):
        if mode not in LATENT_MODES:
            raise ValueError(f'Invalid mode "{mode}": use one of {list(LATENT_MODES)}')
        if start not in _STARTS:
            raise ValueError(f'Invalid start "{start}": use one of {list(_STARTS)}')
        if steps < 1 or starts < 1 or batch_size < 1:
            raise ValueError("Need steps, starts and batch_size of at least 1")
        keyed = bool(getattr(model, "is_keyed", False))
        if mode == "public" and keyed:
            raise ValueError("A keyed model's protected path has no public trigger")
        if mode in ("own-key", "free-key") and not keyed:
            raise ValueError(f'Mode "{mode}" needs a keyed model')
        if mode == "free-modulation" and not hasattr(model.g_s, "synthesize_terms"):
            raise ValueError(
                f"{type(model.g_s).__name__} has no per-point modulation to search"
            )
        suffix = "-random" if start == "random" else ""
        super().__init__(name or f"latent-{mode}{suffix}")
        self.model = model
        self.mode = mode
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)
        self.start = start
        self.starts = int(starts)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.on_full = False  # it fits through the model: protected decodes only
        self.seconds = 0.0
        self.images_done = 0
        self.last_fit_mse: Optional[float] = None

    # -------------------------------------------------------------- searched part
    def _searched(self, y: Tensor, generator: torch.Generator) -> List[Tensor]:
        """The parameters besides the latent, at their start."""
        model, batch = self.model, y.size(0)
        random = self.start == "random"

        def draw(shape, scale: float) -> Tensor:
            if not random:
                return torch.zeros(shape)
            return torch.randn(shape, generator=generator) * scale

        if self.mode == "free-trigger":
            with torch.no_grad():
                scale = float(model.trigger("protected").norm())
            dim = int(model.trigger("full").size(-1))
            # A random start of the protected trigger's norm.
            return [draw((batch, dim), max(scale, 1e-3) / dim**0.5)]
        if self.mode == "free-modulation":
            with torch.no_grad():
                terms = _protected_terms(model)
            return [
                draw((batch, t.size(-1)), float(t.std()) if t.numel() > 1 else 0.0)
                for t in terms.values()
            ]
        if self.mode in ("own-key", "free-key"):
            shift = model.key_shift
            # An attacker's own key gives noise of this law (models/keys.py).
            noise = torch.randn(
                (batch, shift.noise_channels, *y.shape[-2:]), generator=generator
            )
            if self.mode == "free-key" and not random:
                noise.zero_()
            return [noise]
        return []

    def _decode(self, y: Tensor, searched: List[Tensor]) -> Tensor:
        model = self.model
        if self.mode == "public":
            return model.g_s(y, model.trigger("protected", 1))
        if self.mode == "full-path":
            return model.g_s(y, model.trigger("full", 1))
        if self.mode == "free-trigger":
            return model.g_s(y, searched[0])
        if self.mode == "free-modulation":
            points = list(model.g_s.points)
            return model.g_s.synthesize_terms(y, dict(zip(points, searched)))
        return model.keyed_synthesis(y, searched[0])

    def _fit(
        self, published: Tensor, generator: torch.Generator
    ) -> Tuple[Tensor, Tensor]:
        """One start: (full decode of the fitted latent, per-image fit MSE)."""
        model = self.model
        with torch.no_grad():
            y = model.g_a(published).detach()
        y.requires_grad_(True)
        searched = [p.requires_grad_(True) for p in self._searched(y, generator)]
        trained = [y] + (searched if self.mode != "own-key" else [])
        optimiser = torch.optim.Adam(trained, lr=self.learning_rate)
        for _ in range(self.steps):
            loss = F.mse_loss(self._decode(y, searched), published)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            errors = (self._decode(y, searched) - published).pow(2).flatten(1).mean(1)
            restored = model.g_s(y, model.trigger("full", 1)).clamp(0, 1)
        return restored, errors

    def apply(self, images: Tensor) -> Tensor:
        with torch.inference_mode(False), torch.enable_grad():
            # A clone is a normal tensor, even of an inference-mode batch.
            return self._apply(images.clone())

    def _apply(self, images: Tensor) -> Tensor:
        model = self.model
        was_training = model.training
        model.eval()
        grads = [p.requires_grad for p in model.parameters()]
        for param in model.parameters():
            param.requires_grad_(False)
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(self.seed)
        try:
            outputs, errors = [], []
            for begin in range(0, images.size(0), self.batch_size):
                batch = images[begin : begin + self.batch_size]
                best, best_error = None, None
                for _ in range(self.starts):
                    restored, error = self._fit(batch, generator)
                    if best is None:
                        best, best_error = restored, error
                    else:
                        better = error < best_error
                        best = torch.where(better[:, None, None, None], restored, best)
                        best_error = torch.minimum(error, best_error)
                outputs.append(best)
                errors.append(best_error)
        finally:
            for param, flag in zip(model.parameters(), grads):
                param.requires_grad_(flag)
            model.train(was_training)
        self.seconds += time.perf_counter() - start
        self.images_done += images.size(0)
        all_errors = torch.cat(errors)
        self.last_fit_mse = float(all_errors.mean())
        return torch.cat(outputs)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out.update(
            {
                "mode": self.mode,
                "steps": self.steps,
                "learning_rate": self.learning_rate,
                "start": self.start,
                "starts": self.starts,
                "seconds": round(self.seconds, 1),
                "seconds_per_image": (
                    round(self.seconds / self.images_done, 3)
                    if self.images_done
                    else None
                ),
                "threads": torch.get_num_threads(),
                "fit_mse": self.last_fit_mse,
            }
        )
        return out


def _protected_terms(model: nn.Module) -> Dict[str, Tensor]:
    """The per-point changes of the protected condition (their sizes set the
    random starts of the modulation search)."""
    trigger = model.trigger("protected", 1)
    return {point: proj(trigger) for point, proj in model.g_s.projections}


def latent_attacks_for(
    model: nn.Module,
    steps: int = 300,
    starts: int = 1,
    batch_size: int = 100,
    seed: int = 0,
) -> Dict[str, LatentInversionAttack]:
    """Every latent inversion the model admits, by name: what an attacker holding
    the model (not the key) tries. Unkeyed models: the public trigger, the full
    path, and the trigger and modulation searches from zero and random starts;
    keyed models: the full path, the trigger and modulation searches, a key of
    the attacker's own, and the key noise searched from zero and random starts.
    """
    keyed = bool(getattr(model, "is_keyed", False))
    plans: List[Tuple[str, str]] = [("full-path", "zero")]
    if not keyed:
        plans.insert(0, ("public", "zero"))
    plans += [("free-trigger", "zero"), ("free-trigger", "random")]
    if hasattr(model.g_s, "synthesize_terms"):
        plans += [("free-modulation", "zero"), ("free-modulation", "random")]
    if keyed:
        plans += [("own-key", "random"), ("free-key", "zero"), ("free-key", "random")]
    attacks = {}
    for mode, start in plans:
        attack = LatentInversionAttack(
            model,
            mode,
            steps=steps,
            start=start,
            starts=starts if start == "random" else 1,
            batch_size=batch_size,
            seed=seed,
            name=f"latent-{mode}"
            + ("" if mode == "own-key" or start == "zero" else "-random"),
        )
        attacks[attack.name] = attack
    return attacks
