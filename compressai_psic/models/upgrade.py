r"""Upgrading CompressAI models: shielded classes and instances, and back.

- :func:`shield` turns a CompressAI model into its shielded version (a copy that
  decodes exactly as before on both paths until its triggers are trained);
- :func:`unshield` gives the base model back;
- :func:`shielded_class` returns the shielded class of a CompressAI class.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from compressai.models import CompressionModel

from .conditions import ConditionEncoder, FourierConditionEncoder
from .portable import remove_hyper_synthesis
from .registry import (
    Architecture,
    auto_injection_points,
    find_architecture,
)
from .shielded import ShieldedMixin
from .symbols import remove_symbol_taps

__all__ = [
    "make_shielded_class",
    "rebuild_dynamic",
    "shield",
    "shielded_class",
    "unshield",
]


def _adopt(cls: type, model: nn.Module) -> nn.Module:
    """An instance of ``cls`` holding (a copy of) every attribute of ``model``."""
    shielded = cls.__new__(cls)
    nn.Module.__init__(shielded)
    model = copy.deepcopy(model)
    for key, value in model.__dict__.items():
        if key in ("_modules", "_parameters", "_buffers"):
            getattr(shielded, key).update(value)
        elif key not in shielded.__dict__ or key == "training":
            shielded.__dict__[key] = value
    return shielded


def unshield(model: nn.Module) -> CompressionModel:
    """The base CompressAI model of a shielded one (a copy, without triggers).

    For anchored architectures (every CompressAI zoo architecture) it decodes
    exactly the shielded model's ``"full"`` image.
    """
    if not isinstance(model, ShieldedMixin):
        raise ValueError(f"{type(model).__name__} is not a shielded model")
    if model._psic_architecture.trigger_argument:
        raise ValueError(
            f"{model.architecture} has no unconditional base model: its synthesis "
            "blocks take the trigger themselves"
        )
    base = model._psic_base_class.__new__(model._psic_base_class)
    nn.Module.__init__(base)
    source = copy.deepcopy(model)
    source.g_s = source.g_s.plain()  # the base synthesis: the same layers
    # CompressAI's own classes again (the symbol taps and the integer h_s).
    remove_symbol_taps(source)
    remove_hyper_synthesis(source)
    for key, value in source.__dict__.items():
        if key in ("_modules", "_parameters", "_buffers"):
            shield_parts = ("global_cond", "trigger_proj")
            getattr(base, key).update(
                {k: v for k, v in value.items() if k not in shield_parts}
            )
        elif not key.startswith("_psic_") and (
            key not in base.__dict__ or key == "training"
        ):
            base.__dict__[key] = value
    return base


def shield(
    model: CompressionModel,
    *,
    plan: Optional[str] = None,
    injection_points: Optional[Sequence] = None,
    trigger_dim: Optional[int] = None,
    num_frequencies: Optional[int] = None,
    condition_encoder: Optional[ConditionEncoder] = None,
    modulation: Optional[str] = None,
) -> CompressionModel:
    """A shielded copy of a CompressAI model (``model`` itself is unchanged).

    Every base weight and entropy buffer is kept. Trigger projections start at
    zero, so both decode paths give exactly the base model's output, for every
    plan, and ``compress()`` returns byte-identical strings.

    ``modulation`` is ``"bias"`` (default, the paper) or ``"affine"`` (see
    :class:`~compressai_psic.models.ShieldedMixin`).

    On a model that is already shielded, ``plan``/``injection_points``/
    ``modulation`` re-plan a copy: the condition encoder and the projections of
    points kept by the new plan are carried over (a bias projection becomes the
    bias half of an affine one), new weights start at zero. Its condition encoder is
    trained weights: changing ``trigger_dim``, ``num_frequencies`` or
    ``condition_encoder`` raises (use ``shield(unshield(model), ...)``).
    """
    if isinstance(model, ShieldedMixin):
        return _replan(
            model,
            plan,
            injection_points,
            trigger_dim,
            num_frequencies,
            condition_encoder,
            modulation,
        )
    if not isinstance(model, CompressionModel):
        raise ValueError(
            f"shield() takes a compressai CompressionModel, got {type(model).__name__}"
        )
    cls = shielded_class(type(model))
    shielded = _adopt(cls, model)
    if condition_encoder is None:
        # Layouts that hold their own projections fix the trigger width.
        width = trigger_dim or getattr(model, "trigger_dim", None) or 512
        condition_encoder = FourierConditionEncoder(width, num_frequencies or 10)
    param = next(model.parameters(), None)
    if param is not None:
        condition_encoder.to(device=param.device, dtype=param.dtype)
    shielded._init_shield(
        condition_encoder, plan, injection_points, modulation or "bias"
    )
    if param is not None:
        shielded.trigger_proj.to(device=param.device, dtype=param.dtype)
    shielded.train(model.training)
    return shielded


def _replan(
    model: nn.Module,
    plan: Optional[str],
    injection_points: Optional[Sequence],
    trigger_dim: Optional[int],
    num_frequencies: Optional[int],
    condition_encoder: Optional[ConditionEncoder],
    modulation: Optional[str] = None,
) -> nn.Module:
    encoder = model.global_cond
    if condition_encoder is not None or (
        trigger_dim is not None and trigger_dim != encoder.trigger_dim
    ):
        raise ValueError(
            "This model is already shielded and its condition encoder is trained "
            "weights; to change it, shield the base model: "
            "shield(unshield(model), ...)"
        )
    frequencies = getattr(getattr(encoder, "fourier", None), "num_frequencies", None)
    if num_frequencies is not None and num_frequencies != frequencies:
        raise ValueError(
            f"This model is already shielded with {frequencies} Fourier "
            "frequencies; to change them, use shield(unshield(model), ...)"
        )
    if (
        modulation in (None, model.modulation)
        and plan is None
        and (injection_points is None)
    ):
        return copy.deepcopy(model)
    if model._psic_architecture.trigger_argument:
        raise ValueError(
            f"{model.architecture} adds its biases inside its own blocks; it has "
            f"one plan only ({model.plan!r})"
        )
    if plan is None and injection_points is None:
        injection_points = model.injection_points
    old = {p.target: model.trigger_proj[p.key].weight for p in model._psic_points}
    old_affine = model.modulation == "affine"
    replanned = shield(
        unshield(model),
        plan=plan,
        injection_points=injection_points,
        condition_encoder=copy.deepcopy(encoder),
        modulation=modulation or model.modulation,
    )
    new_affine = replanned.modulation == "affine"
    with torch.no_grad():
        for point in replanned._psic_points:
            if point.target not in old:
                continue
            weight = replanned.trigger_proj[point.key].weight
            previous = old[point.target]
            if old_affine == new_affine:
                weight.copy_(previous)
            elif new_affine:  # the bias rows keep their weights, scales start at 0
                weight[point.channels :].copy_(previous)
            else:
                weight.copy_(previous[point.channels :])
    return replanned


def rebuild_dynamic(base: type, architecture: str) -> nn.Module:
    """Unpickles a model whose shielded class was built at run time (a model
    class shielded without registration): the class of ``base`` now, found by
    :func:`shielded_class`. ``architecture`` is the name it was pickled with."""
    cls = shielded_class(base)
    return cls.__new__(cls)


def make_shielded_class(base: type, architecture: Architecture) -> type:
    """Builds the shielded class of ``base`` at run time (pickles by its base)."""
    return type(
        f"Shielded{base.__name__}",
        (ShieldedMixin, base),
        {
            "_psic_architecture": architecture,
            "_psic_base_class": base,
            "_psic_dynamic": True,
            "_psic_rebuild": staticmethod(rebuild_dynamic),
            "__doc__": f"{base.__name__} with PSIC privacy-shielded decoding "
            f"(architecture {architecture.name!r}).",
        },
    )


_AUTO_CLASSES: Dict[type, type] = {}


def shielded_class(model_class: type) -> type:
    """The shielded class of a CompressAI model class.

    Registered architectures return their module-level class; other
    ``CompressionModel`` subclasses get one built once with
    :func:`~compressai_psic.models.registry.auto_injection_points`.
    """
    if issubclass(model_class, ShieldedMixin):
        return model_class
    arch = find_architecture(model_class)
    if arch is not None:
        return arch.shielded_class
    if not issubclass(model_class, CompressionModel):
        raise ValueError(
            f"{model_class.__name__} is not a compressai CompressionModel; only "
            "CompressionModel subclasses can be shielded"
        )
    if model_class not in _AUTO_CLASSES:
        arch = Architecture(
            name=f"auto:{model_class.__module__}.{model_class.__qualname__}",
            model_class=model_class,
            plans={"auto": auto_injection_points},
            default_plan="auto",
        )
        cls = make_shielded_class(model_class, arch)
        arch.shielded_class = cls
        _AUTO_CLASSES[model_class] = cls
    return _AUTO_CLASSES[model_class]
