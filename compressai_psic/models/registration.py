r"""Registering an architecture: the decorator a maintainer puts on a class.

Kept apart from :mod:`~compressai_psic.models.registry` (the registry's data),
which the mixin itself reads, so that no module of the core imports one that
imports it back.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Type

from compressai.models import CompressionModel
from compressai.registry import MODELS

from .registry import ARCHITECTURES, Architecture, CheckpointLayout, PointsSpec
from .shielded import ShieldedMixin

__all__ = ["register_architecture"]


def _base_of(shielded: type) -> Type[CompressionModel]:
    """The CompressAI class a shielded class extends (first after the mixin)."""
    for klass in shielded.__mro__[1:]:
        if (
            issubclass(klass, CompressionModel)
            and not issubclass(klass, ShieldedMixin)
            and klass is not CompressionModel
        ):
            return klass
    raise ValueError(f"{shielded.__name__} extends no CompressAI model class")


def register_architecture(
    name: str,
    *,
    plans: Mapping[str, PointsSpec],
    config_from_state_dict: Optional[Callable[[Mapping], Dict[str, int]]] = None,
    description: str = "",
    layout: Optional[CheckpointLayout] = None,
) -> Callable[[type], type]:
    """Registers the decorated shielded class as architecture ``name``.

    The class derives from :class:`~compressai_psic.models.ShieldedMixin` and
    a CompressAI model class, and is returned unchanged. It goes into this
    package's registry (``ARCHITECTURES[name]``) and into CompressAI's
    (``compressai.registry.MODELS["psic-<name>"]``): both are written here, and
    only here.

    Args:
        name: the architecture's name (a CompressAI zoo name for its models)
        plans: named injection plans, each a list of points (``"g_s.4"``,
            :class:`InjectionPoint`) or a function of the model giving one;
            the first is the default
        config_from_state_dict: the constructor's kwargs (``N``, ``M``) read
            from a state dict (default: from ``g_a.0.weight``/``g_a.6.weight``)
        description: one line for listings
        layout: weights written elsewhere (:class:`CheckpointLayout`)

    Raises:
        ValueError: for an empty ``plans``, a class that is not a shielded
            CompressAI model, or a name registered by another class (the same
            class registered again, e.g. a module reloaded, replaces itself)
    """
    if not plans:
        raise ValueError("plans must name at least one injection plan")
    plans = dict(plans)
    layout = layout or CheckpointLayout()
    model_name = name if name.startswith("psic-") else f"psic-{name}"

    def decorator(shielded: type) -> type:
        if not (isinstance(shielded, type) and issubclass(shielded, ShieldedMixin)):
            raise ValueError(
                f"{getattr(shielded, '__name__', shielded)!r} must derive from "
                "ShieldedMixin (put it first) and a CompressAI model class"
            )
        base = _base_of(shielded)
        for taken in (ARCHITECTURES.get(name), MODELS.get(model_name)):
            owner = getattr(taken, "shielded_class", taken)
            if owner is not None and _identity(owner) != _identity(shielded):
                raise ValueError(
                    f'Architecture "{name}" is already registered by {_identity(owner)}'
                )
        arch = Architecture(
            name=name,
            model_class=base,
            shielded_class=shielded,
            plans=plans,
            default_plan=next(iter(plans)),
            anchor_full=layout.anchor_full,
            trigger_argument=layout.trigger_argument,
            key_aliases=dict(layout.key_aliases),
            config_from_state_dict=config_from_state_dict,
            description=description,
        )
        shielded._psic_architecture = arch
        shielded._psic_base_class = base
        ARCHITECTURES[name] = arch
        # CompressAI's registry is a view of this one: written here, only here.
        MODELS[model_name] = shielded
        return shielded

    return decorator


def _identity(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
