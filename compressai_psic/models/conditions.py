r"""Conditions and condition encoders (the "CLTG" front end).

A *condition* selects which reconstruction the synthesis transform produces. The
encoder turns it into a *trigger* vector, which the shielded model projects to
per-channel biases inside ``g_s`` (see :mod:`compressai_psic.models`).

.. code-block:: none

    condition ──► β (N,) ──► Fourier features (N, 2F+1) ──► MLP ──► trigger (N, T)
    "protected" = 1.0, "full" = 0.0, float in [0, 1], or a per-sample tensor

Conditional Latent Trigger Generation follows `"Privacy-Shielded Image
Compression: Defending Against Exploitation from Vision-Language Pretrained
Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.

The encoder is a separate module so that another kind of condition (a secret key,
say) can replace it without touching the model API: a subclass only has to
implement :meth:`ConditionEncoder.condition_values` and
:meth:`ConditionEncoder.forward`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "BOTH_CONDITIONS",
    "CONDITION_NAMES",
    "DEFAULT_CONDITION",
    "Condition",
    "ConditionEncoder",
    "FourierConditionEncoder",
    "FourierFeatures",
    "as_condition_list",
    "condition_label",
    "trigger_of",
]

#: Named conditions and their β value (β = 1 protected, β = 0 full, as in the paper).
CONDITION_NAMES = {"protected": 1.0, "full": 0.0}

#: What a decode gives when nobody asks for more: the protected image.
DEFAULT_CONDITION = "protected"

#: The two paths, in the order every multi-condition call uses by default.
BOTH_CONDITIONS = ("protected", "full")

Condition = Union[str, float, int, Tensor, None]


def condition_label(condition: Condition) -> str:
    """Short human-readable label of a condition, for logs and file names."""
    if condition is None:
        return DEFAULT_CONDITION
    if isinstance(condition, str):
        return condition
    if isinstance(condition, Tensor):
        if condition.numel() == 1:
            return f"beta={float(condition):g}"
        return f"beta[{condition.numel()}]"
    return f"beta={float(condition):g}"


class FourierFeatures(nn.Module):
    r"""Lifts scalars to ``[v, sin(v), cos(v), sin(2v), cos(2v), …]``.

    The input comes first, then one sin/cos pair per frequency ``1, 2, 4, …``
    (no factor of π), which gives ``2F + 1`` numbers per value (21 for F = 10).
    """

    def __init__(self, num_frequencies: int = 10):
        super().__init__()
        if num_frequencies < 0:
            raise ValueError(f"num_frequencies must be >= 0, got {num_frequencies}")
        self.num_frequencies = int(num_frequencies)
        self.register_buffer(
            "frequencies",
            2.0 ** torch.arange(self.num_frequencies, dtype=torch.float32),
            persistent=False,
        )

    @property
    def out_features(self) -> int:
        return 2 * self.num_frequencies + 1

    def forward(self, values: Tensor) -> Tensor:
        v = values.reshape(-1, 1)
        angles = v * self.frequencies.to(v.dtype)
        pairs = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)
        return torch.cat((v, pairs.flatten(1)), dim=1)


class _BetaMLP(nn.Module):
    """Two-layer MLP with ReLU after each layer (names match the official layout)."""

    def __init__(self, in_features: int, trigger_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, trigger_dim)
        self.fc2 = nn.Linear(trigger_dim, trigger_dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc2(torch.relu(self.fc1(x))))


class ConditionEncoder(nn.Module):
    """Interface of a condition encoder.

    Subclasses turn user-facing conditions into a tensor of condition values
    (:meth:`condition_values`) and those values into trigger vectors
    (:meth:`forward`). ``trigger_dim`` is the trigger width seen by the
    projections.
    """

    trigger_dim: int

    def condition_values(
        self,
        condition: Condition,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        raise NotImplementedError

    def forward(self, values: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def full_condition(self) -> Any:
        """The condition whose decode is the ordinary (unprotected) image."""
        return "full"


class FourierConditionEncoder(ConditionEncoder):
    r"""β → Fourier features → ``Linear(2F+1, T)``, ReLU, ``Linear(T, T)``, ReLU.

    Accepted conditions: ``"protected"`` (β = 1, the default when ``None``),
    ``"full"`` (β = 0), a float or int in [0, 1], or a tensor of per-sample βs of
    shape ``()``, ``(B,)`` or ``(B, 1)``.

    Args:
        trigger_dim (int): width T of the trigger (512 in the paper)
        num_frequencies (int): number F of sin/cos pairs (10 in the paper)
    """

    def __init__(self, trigger_dim: int = 512, num_frequencies: int = 10):
        super().__init__()
        self.trigger_dim = int(trigger_dim)
        self.fourier = FourierFeatures(num_frequencies)
        self.beta_mlp = _BetaMLP(self.fourier.out_features, self.trigger_dim)

    def condition_values(
        self,
        condition: Condition,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        if condition is None:
            condition = DEFAULT_CONDITION
        if isinstance(condition, str):
            if condition not in CONDITION_NAMES:
                raise ValueError(
                    f'Invalid condition "{condition}": use one of '
                    f"{sorted(CONDITION_NAMES)}, a float in [0, 1] or a tensor of betas"
                )
            return torch.full(
                (batch_size,), CONDITION_NAMES[condition], device=device, dtype=dtype
            )
        if isinstance(condition, bool):
            raise ValueError("Invalid condition: a bool is ambiguous, use 0.0 or 1.0")
        if isinstance(condition, (float, int)):
            beta = float(condition)
            if not (0.0 <= beta <= 1.0) or math.isnan(beta):
                raise ValueError(f"Invalid condition beta={beta}: must lie in [0, 1]")
            return torch.full((batch_size,), beta, device=device, dtype=dtype)
        if isinstance(condition, Tensor):
            values = condition.detach().to(device=device, dtype=dtype).reshape(-1)
            if values.numel() == 1:
                values = values.expand(batch_size)
            elif values.numel() != batch_size:
                raise ValueError(
                    f"Invalid condition tensor of shape {tuple(condition.shape)}: "
                    f"expected one beta or one per sample ({batch_size})"
                )
            if not bool(((values >= 0) & (values <= 1)).all()):
                raise ValueError(
                    "Invalid condition tensor: every beta must lie in [0, 1] "
                    "(1 = protected, 0 = full)"
                )
            return values
        raise ValueError(
            f"Invalid condition of type {type(condition).__name__}: use "
            f"{sorted(CONDITION_NAMES)}, a float in [0, 1] or a tensor of betas"
        )

    def forward(self, values: Tensor) -> Tensor:
        return self.beta_mlp(self.fourier(values))


def trigger_of(
    encoder: ConditionEncoder,
    condition: Condition,
    batch_size: int = 1,
    anchored: bool = True,
) -> Tensor:
    r"""The trigger of ``condition``: one row, or one per sample for a tensor of βs.

    Anchored triggers are ``t(β) − t(β_full)``, exactly zero on the full path
    (so its decode is the base synthesis whatever the encoder's weights); the
    official layout uses ``t(β)`` as published. A named condition or a single β
    is encoded once and its row applies to the whole batch, so a decode does not
    depend on the batch it is part of. Computed on the encoder's device and dtype.
    """
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    per_sample = isinstance(condition, Tensor) and condition.numel() > 1
    values = encoder.condition_values(
        condition, batch_size if per_sample else 1, device, dtype
    )
    trigger = encoder(values)
    if not anchored:
        return trigger
    full = encoder.condition_values(encoder.full_condition, 1, device, dtype)
    is_full = (values.reshape(values.size(0), -1) == full.reshape(1, -1)).all(
        dim=1, keepdim=True
    )
    return torch.where(is_full, torch.zeros_like(trigger), trigger - encoder(full))


def as_condition_list(conditions: Sequence[Condition]) -> list:
    """Checks that ``conditions`` is a non-empty list or tuple and returns a list."""
    if isinstance(conditions, (str, Tensor)) or not isinstance(conditions, Sequence):
        raise ValueError("conditions must be a list or tuple of conditions")
    if len(conditions) == 0:
        raise ValueError("conditions must not be empty")
    return list(conditions)
