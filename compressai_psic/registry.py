r"""Where trigger biases go, per architecture.

Each CompressAI architecture is registered with the places in its synthesis
transform ``g_s`` whose outputs receive a trigger bias (:class:`InjectionPoint`).
Registering a new architecture takes one call::

    from compressai_psic import InjectionPoint, register_architecture

    register_architecture(
        "my-model", MyModel, injection_points=["g_s.3", "g_s.4"]
    )

which returns the shielded class and adds it to ``compressai.registry.MODELS``
as ``psic-my-model``. Unregistered :class:`~compressai.models.CompressionModel`
subclasses whose ``g_s`` is an ``nn.Sequential`` get injection points chosen by
:func:`auto_injection_points`.

See `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Type, Union

import torch.nn as nn
from compressai.models import CompressionModel
from compressai.registry import MODELS

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "InjectionPoint",
    "auto_injection_points",
    "find_architecture",
    "get_architecture",
    "infer_channels",
    "register_architecture",
]


@dataclass(frozen=True)
class InjectionPoint:
    """A module whose output gets a per-channel trigger bias.

    Args:
        target (str): dotted path of the module, from the model root (``"g_s.4"``)
        channels (int): number of output channels; inferred from the module when
            ``None``
        projection (str): dotted path of an existing bias-free ``Linear`` (or a
            module ending in one) to use as projection; when ``None`` the shielded
            model creates one in ``trigger_proj``
    """

    target: str
    channels: Optional[int] = None
    projection: Optional[str] = None

    @property
    def key(self) -> str:
        """Name of the projection inside ``trigger_proj`` (dots are not allowed)."""
        return self.target.replace(".", "-")


PointsSpec = Union[
    Sequence[Union[str, InjectionPoint]],
    Callable[[nn.Module], Sequence[Union[str, InjectionPoint]]],
]


@dataclass
class Architecture:
    """Registry entry of one architecture.

    Args:
        name: registry name (a CompressAI zoo name, or e.g. ``"psic-hy2018"``)
        model_class: the CompressAI base class
        injection_points: paths or :class:`InjectionPoint` s, or a function of the
            model instance that returns them
        anchor_full: if True the injected bias is ``P(t(β) − t(0))``, so the
            ``"full"`` decode is the base synthesis whatever the trigger weights
            (needed for exact upgrades and triggers-only training); the official
            PSIC layout uses ``P(t(β))`` and sets it to False
        key_aliases: prefix renames between this package's module names and an
            external checkpoint layout (internal → external)
        config_from_state_dict: returns the constructor kwargs (e.g. ``N``, ``M``)
            of a state dict; defaults to reading ``g_a.0.weight`` and
            ``g_a.6.weight``
        description: one line for listings
    """

    name: str
    model_class: Type[CompressionModel]
    injection_points: PointsSpec
    anchor_full: bool = True
    key_aliases: Mapping[str, str] = field(default_factory=dict)
    config_from_state_dict: Optional[Callable[[Mapping], Dict[str, int]]] = None
    description: str = ""

    def points_for(self, model: nn.Module) -> List[InjectionPoint]:
        spec = self.injection_points
        points = spec(model) if callable(spec) else spec
        return [
            p if isinstance(p, InjectionPoint) else InjectionPoint(p) for p in points
        ]

    def config(self, state_dict: Mapping) -> Dict[str, int]:
        if self.config_from_state_dict is not None:
            return self.config_from_state_dict(state_dict)
        return default_config_from_state_dict(state_dict)


#: Registered architectures by name.
ARCHITECTURES: Dict[str, Architecture] = {}


def default_config_from_state_dict(state_dict: Mapping) -> Dict[str, int]:
    """``N`` and ``M`` from ``g_a.0.weight`` and ``g_a.6.weight`` (Ballé-style g_a)."""
    try:
        return {
            "N": int(state_dict["g_a.0.weight"].size(0)),
            "M": int(state_dict["g_a.6.weight"].size(0)),
        }
    except KeyError as err:
        raise ValueError(
            f"Cannot infer N/M: the state dict has no {err.args[0]!r} key"
        ) from None


def infer_channels(module: nn.Module) -> Optional[int]:
    """Output channels of a layer, or ``None`` when it cannot be told."""
    for attr in ("out_channels", "out_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    beta = getattr(module, "beta", None)  # compressai.layers.GDN
    if isinstance(beta, nn.Parameter) and beta.dim() == 1:
        return int(beta.numel())
    if isinstance(module, nn.Sequential) and len(module) > 0:
        for child in reversed(module):
            if isinstance(child, nn.PixelShuffle):
                inner = infer_channels(module[0])
                factor = child.upscale_factor
                return None if inner is None else inner // (factor * factor)
            channels = infer_channels(child)
            if channels is not None:
                return channels
    return None


def auto_injection_points(model: nn.Module, count: int = 2) -> List[InjectionPoint]:
    """Default points for a ``g_s`` that is an ``nn.Sequential``.

    Takes the last ``count`` top-level layers before the final one whose output
    channels can be inferred. Late points keep multi-condition decoding cheap:
    everything before the first point is computed once for all conditions.
    """
    g_s = getattr(model, "g_s", None)
    if not isinstance(g_s, nn.Sequential) or len(g_s) < 2:
        raise ValueError(
            f"{type(model).__name__} cannot be shielded automatically: its g_s is not "
            "an nn.Sequential of at least two layers; register it with "
            "compressai_psic.register_architecture(name, cls, injection_points=[...])"
        )
    points = []
    for index in range(len(g_s) - 2, -1, -1):
        channels = infer_channels(g_s[index])
        if channels is not None:
            points.append(InjectionPoint(f"g_s.{index}", channels))
        if len(points) == count:
            break
    if not points:
        raise ValueError(
            f"{type(model).__name__}: no layer of g_s has inferable output channels; "
            "register it with explicit InjectionPoint(target, channels)"
        )
    return points[::-1]


def register_architecture(
    name: str,
    model_class: Type[CompressionModel],
    injection_points: PointsSpec = auto_injection_points,
    *,
    anchor_full: bool = True,
    key_aliases: Optional[Mapping[str, str]] = None,
    config_from_state_dict: Optional[Callable[[Mapping], Dict[str, int]]] = None,
    description: str = "",
    override: bool = False,
) -> type:
    """Registers an architecture and returns its shielded class.

    The shielded class is also registered in ``compressai.registry.MODELS`` as
    ``psic-<name>`` (or ``<name>`` when it already starts with ``psic-``).
    """
    if not (
        isinstance(model_class, type) and issubclass(model_class, CompressionModel)
    ):
        raise ValueError(
            f"model_class must be a compressai CompressionModel subclass, got "
            f"{model_class!r}"
        )
    if name in ARCHITECTURES and not override:
        raise ValueError(
            f'Architecture "{name}" is already registered (pass override=True to '
            "replace it)"
        )
    arch = Architecture(
        name=name,
        model_class=model_class,
        injection_points=injection_points,
        anchor_full=anchor_full,
        key_aliases=dict(key_aliases or {}),
        config_from_state_dict=config_from_state_dict,
        description=description,
    )
    ARCHITECTURES[name] = arch
    from .models import shielded_class  # local import: models imports this module

    cls = shielded_class(model_class, arch, refresh=True)
    MODELS[name if name.startswith("psic-") else f"psic-{name}"] = cls
    return cls


def get_architecture(name: str) -> Architecture:
    """The registered :class:`Architecture` called ``name``."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f'Unknown architecture "{name}"; registered: {sorted(ARCHITECTURES)}'
        ) from None


def find_architecture(model_class: type) -> Optional[Architecture]:
    """The entry registered for exactly ``model_class`` (or its shielded class)."""
    base = getattr(model_class, "_psic_base_class", model_class)
    for arch in ARCHITECTURES.values():
        if arch.model_class is base:
            return arch
    return None
