r"""Registering an architecture: the decorator a maintainer puts on a class.

Kept apart from :mod:`~compressai_psic.models.registry` (the registry's data),
which the mixin itself reads, so that no module of the core imports one that
imports it back.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Type

from compressai.models import CompressionModel
from compressai.registry import MODELS

from .registry import ARCHITECTURES, Architecture, PointsSpec, auto_injection_points
from .shielded import ShieldedMixin
from .upgrade import make_shielded_class

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
    model_class: Optional[Type[CompressionModel]] = None,
    injection_points: Optional[PointsSpec] = None,
    *,
    plans: Optional[Mapping[str, PointsSpec]] = None,
    default_plan: Optional[str] = None,
    anchor_full: bool = True,
    trigger_argument: bool = False,
    key_aliases: Optional[Mapping[str, str]] = None,
    config_from_state_dict: Optional[Callable[[Mapping], Dict[str, int]]] = None,
    description: str = "",
    override: bool = False,
):
    """Registers an architecture.

    As a decorator (no ``model_class``) it registers the decorated shielded class
    and returns it unchanged. With ``model_class`` (a CompressAI class) it builds
    the shielded class and returns it. ``injection_points`` is a shorthand for a
    single plan called ``"default"``. The shielded class is also registered in
    ``compressai.registry.MODELS`` as ``psic-<name>`` (the one place that writes
    there); a name taken in either registry is refused unless ``override``.
    """
    if plans is None:
        plans = {"default": injection_points or auto_injection_points}
    elif injection_points is not None:
        raise ValueError("Give plans= or injection_points=, not both")
    if not plans:
        raise ValueError("plans must name at least one injection plan")
    plans = dict(plans)
    if default_plan is None:
        default_plan = next(iter(plans))
    if default_plan not in plans:
        raise ValueError(
            f'default_plan "{default_plan}" is not one of the plans {sorted(plans)}'
        )
    model_name = name if name.startswith("psic-") else f"psic-{name}"
    if not override and (name in ARCHITECTURES or model_name in MODELS):
        raise ValueError(
            f'Architecture "{name}" is already registered (pass override=True to '
            "replace it)"
        )

    def register(shielded: Optional[type], base: Type[CompressionModel]) -> type:
        if not (isinstance(base, type) and issubclass(base, CompressionModel)):
            raise ValueError(
                f"model_class must be a compressai CompressionModel subclass, got "
                f"{base!r}"
            )
        arch = Architecture(
            name=name,
            model_class=base,
            plans=plans,
            default_plan=default_plan,
            anchor_full=anchor_full,
            trigger_argument=trigger_argument,
            key_aliases=dict(key_aliases or {}),
            config_from_state_dict=config_from_state_dict,
            description=description,
        )
        if shielded is None:
            shielded = make_shielded_class(base, arch)
        shielded._psic_architecture = arch
        shielded._psic_base_class = base
        arch.shielded_class = shielded
        ARCHITECTURES[name] = arch
        # CompressAI's registry is a view of this one: written here, only here.
        MODELS[model_name] = shielded
        return shielded

    if model_class is not None:
        return register(None, model_class)

    def decorator(shielded: type) -> type:
        if not issubclass(shielded, ShieldedMixin):
            raise ValueError(
                f"{shielded.__name__} must derive from ShieldedMixin (put it first)"
            )
        return register(shielded, _base_of(shielded))

    return decorator
