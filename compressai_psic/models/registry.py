r"""Where trigger biases go, per architecture: the registry of shielded models.

Each architecture is registered with one or more named *injection plans*: lists of
modules inside the synthesis transform ``g_s`` whose outputs receive a
per-channel trigger bias (:class:`InjectionPoint`). A maintainer adds an
architecture with a decorator on a module-level class, the way CompressAI's
``register_model`` works (:func:`~compressai_psic.models.registration.
register_architecture`)::

    from compressai_psic.models import ShieldedMixin, register_architecture

    @register_architecture(
        "my-model",
        plans={"every-stage": ["g_s.0", "g_s.2"], "late": ["g_s.2"]},
    )
    class ShieldedMyModel(ShieldedMixin, MyModel):
        pass

The class is added to ``compressai.registry.MODELS`` as ``psic-my-model``.
Unregistered :class:`~compressai.models.CompressionModel` subclasses whose
``g_s`` is an ``nn.Sequential`` get the points chosen by
:func:`auto_injection_points` when they are shielded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

import torch.nn as nn
from compressai.models import CompressionModel

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CUSTOM_PLAN",
    "Candidate",
    "CheckpointLayout",
    "InjectionPoint",
    "PointsSpec",
    "architectures_matching",
    "auto_injection_points",
    "build_probe",
    "find_architecture",
    "get_architecture",
    "infer_channels",
    "match_architectures",
]

#: Plan name of a model built with explicit ``injection_points``.
CUSTOM_PLAN = "custom"


@dataclass(frozen=True)
class InjectionPoint:
    """A module of ``g_s`` whose output gets a per-channel trigger bias.

    Args:
        target (str): dotted path of the module from the model root (``"g_s.4"``)
        channels (int): output channels; inferred from the module when ``None``
    """

    target: str
    channels: Optional[int] = None

    @property
    def key(self) -> str:
        """Name of the projection in ``trigger_proj`` (module names hold no dots)."""
        return self.target.replace(".", "-")

    @staticmethod
    def target_of(key: str) -> str:
        """Inverse of :attr:`key`."""
        return key.replace("-", ".")


PointsSpec = Union[
    Sequence[Union[str, InjectionPoint]],
    Callable[[nn.Module], Sequence[Union[str, InjectionPoint]]],
]


def _as_points(spec: Sequence[Union[str, InjectionPoint]]) -> List[InjectionPoint]:
    return [p if isinstance(p, InjectionPoint) else InjectionPoint(p) for p in spec]


@dataclass(frozen=True)
class CheckpointLayout:
    """How an architecture whose weights were written elsewhere differs from
    the plugin's own (the authors' ``psic-hy2018`` layout); a new architecture
    of this package needs none of it.

    Args:
        anchor_full: if True the bias is ``P(t(β) − t(0))``, so the ``"full"``
            decode is the base synthesis whatever the trigger weights; the
            authors' layout uses ``P(t(β))`` (False)
        trigger_argument: ``g_s`` is a
            :class:`~compressai_psic.models.synthesis.TriggeredSynthesis` that
            takes the trigger and adds its own biases; plans then only describe
            where those biases are
        key_aliases: prefix renames between this package's module names and the
            external checkpoint's (internal → external)
    """

    anchor_full: bool = True
    trigger_argument: bool = False
    key_aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Architecture:
    """Registry entry of one architecture.

    Args:
        name: registry name (a CompressAI zoo name, or e.g. ``"psic-hy2018"``)
        model_class: the CompressAI base class
        shielded_class: the importable shielded class
        plans: named injection plans: each a list of paths or
            :class:`InjectionPoint` s, or a function of the model that returns one
        default_plan: the plan a new model uses
        anchor_full: if True the bias is ``P(t(β) − t(0))``, so the ``"full"``
            decode is the base synthesis whatever the trigger weights (exact
            upgrades, triggers-only training); the official PSIC layout uses
            ``P(t(β))`` and sets it to False
        trigger_argument: ``g_s`` takes the trigger as a ``trigger=`` keyword and
            adds its own biases (the official layout); plans then only describe
            where those biases are
        key_aliases: prefix renames between this package's module names and an
            external checkpoint layout (internal → external)
        config_from_state_dict: constructor kwargs (e.g. ``N``, ``M``) of a state
            dict; defaults to ``g_a.0.weight`` / ``g_a.6.weight``
        description: one line for listings
    """

    name: str
    model_class: Type[CompressionModel]
    shielded_class: Optional[type] = None
    plans: Mapping[str, PointsSpec] = field(default_factory=dict)
    default_plan: str = "every-stage"
    anchor_full: bool = True
    trigger_argument: bool = False
    key_aliases: Mapping[str, str] = field(default_factory=dict)
    config_from_state_dict: Optional[Callable[[Mapping], Dict[str, int]]] = None
    description: str = ""

    def points_for(self, model: nn.Module, plan: Optional[str] = None):
        """The points of ``plan`` (default: :attr:`default_plan`) for ``model``."""
        plan = self.default_plan if plan is None else plan
        if plan not in self.plans:
            raise ValueError(
                f'Unknown injection plan "{plan}" for {self.name}; use one of '
                f"{sorted(self.plans)}"
            )
        spec = self.plans[plan]
        return _as_points(spec(model) if callable(spec) else spec)

    def plan_of(self, model: nn.Module, targets: Sequence[str]) -> str:
        """Name of the plan whose targets are ``targets`` (else ``"custom"``)."""
        for name in self.plans:
            try:
                points = self.points_for(model, name)
            except ValueError:
                continue
            if [p.target for p in points] == list(targets):
                return name
        return CUSTOM_PLAN

    def config(self, state_dict: Mapping) -> Dict[str, int]:
        if self.config_from_state_dict is not None:
            return self.config_from_state_dict(state_dict)
        return default_config_from_state_dict(state_dict)

    def to_internal(self, state_dict: Mapping) -> Dict:
        """Renames external checkpoint prefixes (``key_aliases``) to module names."""
        return rename_prefixes(state_dict, {v: k for k, v in self.key_aliases.items()})


#: Registered architectures by name, in registration order.
ARCHITECTURES: Dict[str, Architecture] = {}


def rename_prefixes(state_dict: Mapping, renames: Mapping[str, str]) -> Dict:
    """Replaces the first matching prefix of every key (insertion order kept)."""
    out = {}
    for key, value in state_dict.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


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


def auto_injection_points(model: nn.Module) -> List[InjectionPoint]:
    """Points for an unregistered model whose ``g_s`` is an ``nn.Sequential``.

    Every top-level layer but the last one whose output channels can be inferred:
    a bias at every stage of the synthesis, followed by the layers after it.
    """
    g_s = getattr(model, "g_s", None)
    if not isinstance(g_s, nn.Sequential) or len(g_s) < 2:
        raise ValueError(
            f"{type(model).__name__} cannot be shielded automatically: its g_s is not "
            "an nn.Sequential of at least two layers; register a shielded class "
            "of it with @compressai_psic.register_architecture(name, plans={...})"
        )
    points = []
    for index in range(len(g_s) - 1):
        channels = infer_channels(g_s[index])
        if channels is not None:
            points.append(InjectionPoint(f"g_s.{index}", channels))
    if not points:
        raise ValueError(
            f"{type(model).__name__}: no layer of g_s has inferable output channels; "
            "register it with explicit InjectionPoint(target, channels)"
        )
    return points


def get_architecture(name: str) -> Architecture:
    """The registered :class:`Architecture` called ``name``."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f'Unknown architecture "{name}"; registered: {sorted(ARCHITECTURES)}'
        ) from None


def find_architecture(model_class: type) -> Optional[Architecture]:
    """The entry registered for ``model_class`` (a base or a shielded class)."""
    for arch in reversed(list(ARCHITECTURES.values())):
        if model_class is arch.shielded_class or model_class is arch.model_class:
            return arch
    return None


def build_probe(model_class: type, config: Mapping) -> nn.Module:
    """A throw-away model for its parameter names and shapes.

    Built on the meta device (no weights allocated) where the constructor
    allows it, else on the CPU; an exception of the constructor there (a config
    it does not take, an error in a maintainer's own class) propagates as it is.
    """
    import torch

    try:
        with torch.device("meta"):
            return model_class(**config)
    except Exception:  # noqa: BLE001 - e.g. constructors that need real tensors
        pass  # the CPU build below raises the constructor's own error, if any
    with torch.device("cpu"):
        return model_class(**config)


@dataclass
class Candidate:
    """What :func:`match_architectures` found for one registered architecture.

    Args:
        name: the architecture
        config: constructor kwargs read from the weights (``None`` when its
            ``config_from_state_dict`` cannot read them: not this architecture)
        matches: a model built with ``config`` has exactly these weights
        error: the exception of the model's constructor, when it could not be
            built with ``config`` (user code: reported, never replaced)
    """

    name: str
    config: Optional[Dict[str, int]] = None
    matches: bool = False
    error: Optional[Exception] = None


def match_architectures(state_dict: Mapping) -> List[Candidate]:
    """Every registered architecture, newest first, asked about these weights.

    A candidate matches when its config can be read from the state dict and a
    model built with it has the same parameter and buffer names, with the same
    parameter shapes (trigger weights aside).
    """
    candidates = []
    for arch in reversed(list(ARCHITECTURES.values())):
        candidate = Candidate(arch.name)
        candidates.append(candidate)
        internal = arch.to_internal(state_dict)
        try:
            candidate.config = arch.config(internal)
        except (ValueError, KeyError, AttributeError, IndexError):
            continue
        try:
            probe = build_probe(arch.model_class, candidate.config)
        except Exception as err:  # noqa: BLE001 - kept, and reported by the caller
            candidate.error = err
            continue
        expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
        parameters = {k for k, _ in probe.named_parameters()}
        given = {
            k: v
            for k, v in internal.items()
            if not k.startswith(("global_cond.", "trigger_proj.", "key_shift."))
        }
        candidate.matches = set(given) == set(expected) and all(
            tuple(given[k].shape) == expected[k] for k in parameters
        )
    return candidates


def architectures_matching(state_dict: Mapping) -> List[Tuple[str, Dict[str, int]]]:
    """Registered architectures whose base model has exactly these weights, as
    ``(name, config)``. The newest registrations come first, so a maintainer's
    own architecture wins over a built-in one it extends."""
    return [
        (c.name, c.config)
        for c in match_architectures(state_dict)
        if c.matches and c.config is not None
    ]
