r"""Shielded models: CLTG triggers and dual-path decoding for CompressAI models.

A shielded model is the CompressAI class with :class:`ShieldedMixin` in front of
it, so it stays a :class:`~compressai.models.CompressionModel` (CDF buffers load
as usual). The rate path is untouched: ``compress()`` is the base model's and the
bitstream is the same for every decode. Only ``g_s`` is steered:

.. code-block:: none

              ┌───┐ y ┌──────────────┐ y_hat  ┌───────────────────────────┐
        x ──►─┤g_a├─►─┤ entropy model ├──►───┤ g_s layers ... ⊕ ... ⊕ ... ├──► x_hat
              └───┘   └──────────────┘       └────────────────▲─────▲────┘
                                                    bias_k = P_k(t)  (per channel)
        condition ──► β ──► Fourier features ──► MLP ──► trigger t ──┘

Decoding several conditions from one bitstream runs the entropy decoding once;
``g_s`` runs once on a batch that is forked (repeated per condition) only at the
first injection point, so the layers before it are shared.

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from compressai.models import CompressionModel
from torch import Tensor

from .conditions import (
    Condition,
    ConditionEncoder,
    FourierConditionEncoder,
    _as_condition_list,
)
from .registry import (
    Architecture,
    InjectionPoint,
    auto_injection_points,
    find_architecture,
    infer_channels,
)
from .utils import normalize_state_dict

__all__ = [
    "ShieldedMixin",
    "TriggerProjection",
    "shield",
    "shielded_class",
]


class TriggerProjection(nn.Linear):
    """Bias-free ``Linear(trigger_dim → channels)``, zero at creation.

    Zero weights make a freshly shielded model decode exactly as its base model.
    """

    def __init__(self, trigger_dim: int, channels: int):
        super().__init__(trigger_dim, channels, bias=False)
        nn.init.zeros_(self.weight)


class _ActiveCall:
    """Per-call state: how many conditions, batch size and the bias of each point."""

    __slots__ = ("num_conditions", "batch_size", "biases", "forked")

    def __init__(self, num_conditions: int, batch_size: int, biases: Dict[str, Tensor]):
        self.num_conditions = num_conditions
        self.batch_size = batch_size
        self.biases = biases
        self.forked = num_conditions == 1


def _get_submodule(root: nn.Module, path: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ValueError(
            f'Injection point "{path}" does not exist in {type(root).__name__}'
        ) from None


class ShieldedMixin:
    r"""Adds CLTG triggers and dual-path decoding to a CompressAI model class.

    Use :func:`shield` on an instance or :func:`shielded_class` on a class rather
    than subclassing this directly. Extra constructor keyword arguments:

    Args:
        trigger_dim (int): width of the trigger vector (512 in the paper)
        num_frequencies (int): Fourier frequencies of β (10 in the paper)
        condition_encoder (ConditionEncoder): replaces the default
            :class:`~compressai_psic.conditions.FourierConditionEncoder`
        injection_points (list): overrides the registered injection points

    Conditions are ``"protected"`` (β = 1, the default), ``"full"`` (β = 0), a
    float in [0, 1] or a tensor of per-sample βs.
    """

    _psic_architecture: Architecture
    _psic_base_class: type
    default_condition: Condition = "protected"

    def __init__(
        self,
        *args: Any,
        trigger_dim: int = 512,
        num_frequencies: int = 10,
        condition_encoder: Optional[ConditionEncoder] = None,
        injection_points: Optional[Sequence] = None,
        **kwargs: Any,
    ):
        if "trigger_dim" in inspect.signature(self._psic_base_class).parameters:
            kwargs["trigger_dim"] = trigger_dim  # base layouts that hold projections
        super().__init__(*args, **kwargs)
        if condition_encoder is None:
            condition_encoder = FourierConditionEncoder(trigger_dim, num_frequencies)
        self._init_shield(condition_encoder, injection_points)

    # ------------------------------------------------------------------ setup
    def _init_shield(
        self, condition_encoder: ConditionEncoder, injection_points: Optional[Sequence]
    ) -> None:
        arch = self._psic_architecture
        self.global_cond = condition_encoder
        if injection_points is None:
            points = arch.points_for(self)
        else:
            points = [
                p if isinstance(p, InjectionPoint) else InjectionPoint(p)
                for p in injection_points
            ]
        if not points:
            raise ValueError("At least one injection point is required")
        self.trigger_proj = nn.ModuleDict()
        resolved: List[InjectionPoint] = []
        for point in points:
            if not point.target.startswith("g_s."):
                raise ValueError(
                    f'Injection point "{point.target}" is not inside g_s: triggers '
                    "steer the synthesis transform only"
                )
            module = _get_submodule(self, point.target)
            channels = point.channels or infer_channels(module)
            if channels is None:
                raise ValueError(
                    f'Cannot infer the channels of injection point "{point.target}" '
                    f"({type(module).__name__}); give InjectionPoint(target, channels)"
                )
            if point.projection is None:
                self.trigger_proj[point.key] = TriggerProjection(
                    condition_encoder.trigger_dim, channels
                )
            resolved.append(InjectionPoint(point.target, channels, point.projection))
        self._psic_points = resolved
        self._psic_conditions: Optional[List[Condition]] = None
        self._psic_call: Optional[_ActiveCall] = None
        self._psic_fork_path = self._fork_path(resolved)
        self._psic_handles = []
        self._install_hooks()

    def _fork_path(self, points: Sequence[InjectionPoint]) -> Tuple[str, str]:
        """Where the batch is repeated per condition: ("post", path) or ("pre", path).

        The output of a direct child of a sequential ``g_s`` can be forked there:
        nothing bypasses a Sequential boundary. A point nested deeper (inside a
        residual block) forks at the input of its top-level block, so skip
        connections see the forked batch too.
        """
        g_s = self.g_s
        order = {f"g_s.{name}": i for i, name in enumerate(g_s._modules)}
        if not isinstance(g_s, nn.Sequential):
            return ("pre", "g_s")

        def top_level(path: str) -> str:
            return ".".join(path.split(".")[:2])

        first = min(points, key=lambda p: order.get(top_level(p.target), 1 << 30))
        top = top_level(first.target)
        if all(p.target == top for p in points if top_level(p.target) == top):
            return ("post", top)
        return ("pre", top)

    def _install_hooks(self) -> None:
        for handle in self._psic_handles:
            handle.remove()
        handles = [self.g_s.register_forward_pre_hook(self._psic_enter_synthesis)]
        handles.append(self.g_s.register_forward_hook(self._psic_leave_synthesis))
        kind, fork_path = self._psic_fork_path
        if kind == "pre":
            fork = _get_submodule(self, fork_path)
            handles.append(fork.register_forward_pre_hook(self._psic_fork_input))
        for point in self._psic_points:
            module = _get_submodule(self, point.target)
            # The hook finds its point through the module, which survives deepcopy.
            module._psic_target = point.target
            handles.append(module.register_forward_hook(self._psic_add_bias))
        self._psic_handles = handles

    # ------------------------------------------------------------- properties
    @property
    def injection_points(self) -> List[InjectionPoint]:
        """The resolved injection points (target, channels, projection)."""
        return list(self._psic_points)

    @property
    def architecture(self) -> str:
        """Registry name of this model's architecture."""
        return self._psic_architecture.name

    def projection(self, point: InjectionPoint) -> nn.Module:
        if point.projection is not None:
            return _get_submodule(self, point.projection)
        return self.trigger_proj[point.key]

    def trigger_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the condition encoder and of every projection."""
        seen = set()
        for module in [self.global_cond] + [
            self.projection(p) for p in self._psic_points
        ]:
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield param

    def parameter_groups(self) -> Dict[str, List[str]]:
        """Parameter names by role: ``synthesis``, ``trigger_encoder``,
        ``trigger_projections``, ``rate`` (analysis, hyper and entropy models)."""
        encoder = {id(p) for p in self.global_cond.parameters()}
        projections = {
            id(p) for pt in self._psic_points for p in self.projection(pt).parameters()
        }
        synthesis = {id(p) for p in self.g_s.parameters()}
        groups: Dict[str, List[str]] = {
            "synthesis": [],
            "trigger_encoder": [],
            "trigger_projections": [],
            "rate": [],
        }
        for name, param in self.named_parameters():
            if id(param) in encoder:
                groups["trigger_encoder"].append(name)
            elif id(param) in projections:
                groups["trigger_projections"].append(name)
            elif id(param) in synthesis:
                groups["synthesis"].append(name)
            else:
                groups["rate"].append(name)
        return groups

    # ------------------------------------------------------------------ hooks
    def _psic_enter_synthesis(self, module: nn.Module, args: Tuple) -> None:
        y_hat = args[0]
        conditions = self._psic_conditions or [self.default_condition]
        batch = y_hat.size(0)
        encoder = self.global_cond
        param = next(encoder.parameters(), None)
        dtype = param.dtype if param is not None else y_hat.dtype
        device = y_hat.device
        values = torch.cat(
            [encoder.condition_values(c, batch, device, dtype) for c in conditions]
        )
        # One encoder and projection call per distinct value: GEMM results depend
        # on the batch layout, and a decode must not depend on what else is
        # decoded with it (single and multi-condition decodes agree bit for bit
        # up to the synthesis itself).
        unique, inverse = torch.unique(values, return_inverse=True)
        anchor = None
        if self._psic_architecture.anchor_full:
            # Bias P(t(β) − t(0)): the full path is the base synthesis exactly.
            zero = encoder.condition_values(encoder.full_condition, 1, device, dtype)
            anchor = (zero, encoder(zero))
        per_value: List[List[Tensor]] = [[] for _ in self._psic_points]
        for value in unique:
            value = value.reshape(1)
            trigger = encoder(value)
            if anchor is not None:
                if bool(value == anchor[0]):
                    trigger = torch.zeros_like(trigger)
                else:
                    trigger = trigger - anchor[1]
            for rows, point in zip(per_value, self._psic_points):
                rows.append(self.projection(point)(trigger))
        biases = {}
        for rows, point in zip(per_value, self._psic_points):
            biases[point.target] = torch.cat(rows)[inverse].to(y_hat.dtype)
        self._psic_call = _ActiveCall(len(conditions), batch, biases)

    def _psic_leave_synthesis(self, module: nn.Module, args: Tuple, out: Tensor):
        self._psic_call = None

    def _psic_fork_input(self, module: nn.Module, args: Tuple):
        call = self._psic_call
        if call is None or call.forked:
            return None
        call.forked = True
        x = args[0]
        return (x.repeat(call.num_conditions, *([1] * (x.dim() - 1))),) + args[1:]

    def _psic_add_bias(self, module: nn.Module, args: Tuple, out: Tensor) -> Tensor:
        call = self._psic_call
        if call is None:
            raise RuntimeError(
                "A shielded injection point ran outside of g_s; call the model's "
                "forward/decompress or g_s itself"
            )
        target = module._psic_target
        bias = call.biases[target]
        view = bias.shape + (1,) * (out.dim() - 2)
        if not call.forked:
            # First point after a shared prefix: one copy of the features per
            # condition, each with its own bias.
            call.forked = True
            k, b = call.num_conditions, call.batch_size
            expanded = out.unsqueeze(0) + bias.view((k, b) + view[1:])
            return expanded.flatten(0, 1)
        if bias.size(0) != out.size(0):
            raise RuntimeError(
                f"Batch mismatch at {target}: features {out.size(0)}, "
                f"biases {bias.size(0)}"
            )
        if not out.requires_grad:
            # Decoding: skip a full-size allocation (autograd is not involved).
            return out.add_(bias.view(view))
        return out + bias.view(view)

    # ----------------------------------------------------------- conditions
    @contextlib.contextmanager
    def conditioned(self, conditions: Sequence[Condition]) -> Iterator[None]:
        """Context in which ``g_s`` decodes every condition of ``conditions``.

        With K conditions, ``g_s`` returns a batch of K·B images, condition-major.
        """
        previous = self._psic_conditions
        self._psic_conditions = _as_condition_list(conditions)
        try:
            yield
        finally:
            self._psic_conditions = previous
            self._psic_call = None

    @staticmethod
    def _split(x_hat: Tensor, count: int) -> List[Tensor]:
        return list(x_hat.chunk(count, dim=0))

    # ---------------------------------------------------------- public API
    def forward(self, x: Tensor, condition: Any = "protected") -> Dict[str, Any]:
        """Training/analysis forward pass.

        Args:
            x: images (B, 3, H, W) in [0, 1]
            condition: one condition (a name, a float β or a (B,) tensor of βs), or a
                list/tuple of conditions to decode all of them from the same
                ``y_hat`` (then ``x_hat`` is a list, in the same order)

        Returns:
            ``{"x_hat", "likelihoods"}`` as CompressAI's models
        """
        if isinstance(condition, (list, tuple)):
            return self.forward_multi(x, condition)
        with self.conditioned([condition]):
            return super().forward(x)

    def forward_multi(
        self, x: Tensor, conditions: Sequence[Condition] = ("full", "protected")
    ) -> Dict[str, Any]:
        """Forward with several conditions; ``x_hat`` is a list, one per condition,
        and ``conditions`` repeats them (the losses read it)."""
        conditions = _as_condition_list(conditions)
        with self.conditioned(conditions):
            out = super().forward(x)
        out["x_hat"] = self._split(out["x_hat"], len(conditions))
        # Lets the losses tell which reconstruction is which path.
        out["conditions"] = list(conditions)
        return out

    def decompress(
        self, strings: List, shape: Any, condition: Condition = None, **kwargs: Any
    ) -> Dict[str, Tensor]:
        """Decodes one reconstruction; with no condition, the **protected** one."""
        if condition is None:
            condition = self.default_condition
        with self.conditioned([condition]):
            return super().decompress(strings, shape, **kwargs)

    def decompress_multi(
        self,
        strings: List,
        shape: Any,
        conditions: Sequence[Condition] = ("protected", "full"),
        **kwargs: Any,
    ) -> Dict[str, List[Tensor]]:
        """Decodes several conditions from one bitstream.

        Entropy decoding runs once; ``g_s`` runs once on the stacked latents
        (forked at the first injection point). Returns ``{"x_hat": [...]}`` in
        the order of ``conditions``.
        """
        conditions = _as_condition_list(conditions)
        with self.conditioned(conditions):
            out = super().decompress(strings, shape, **kwargs)
        return {"x_hat": self._split(out["x_hat"], len(conditions))}

    # ------------------------------------------------------------ state dict
    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        state_dict = normalize_state_dict(state_dict, self)
        aliases = self._psic_architecture.key_aliases
        if aliases:
            state_dict = _rename_prefixes(
                state_dict, {v: k for k, v in aliases.items()}
            )
        return super().load_state_dict(state_dict, strict=strict)

    def state_dict(self, *args: Any, **kwargs: Any):
        state = super().state_dict(*args, **kwargs)
        aliases = self._psic_architecture.key_aliases
        if aliases:
            prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
            renamed = _rename_prefixes(
                state, {prefix + k: prefix + v for k, v in aliases.items()}
            )
            state.clear()
            state.update(renamed)
        return state

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Tensor], **kwargs: Any):
        """Builds the model from a state dict (or a ``{"state_dict": …}`` checkpoint).

        Channel counts (N, M), trigger width and Fourier frequencies are read from
        the weights; ``module.`` prefixes and CompressAI 1.2.6 entropy-bottleneck
        names are accepted.
        """
        state_dict = normalize_state_dict(state_dict)
        arch = cls._psic_architecture
        aliases = arch.key_aliases
        internal = (
            _rename_prefixes(state_dict, {v: k for k, v in aliases.items()})
            if aliases
            else state_dict
        )
        config = dict(arch.config(internal))
        fc1 = internal.get("global_cond.beta_mlp.fc1.weight")
        if fc1 is not None and "condition_encoder" not in kwargs:
            config.setdefault("trigger_dim", int(fc1.size(0)))
            config.setdefault("num_frequencies", (int(fc1.size(1)) - 1) // 2)
        config.update(kwargs)
        net = cls(**config)
        net.load_state_dict(state_dict)
        return net

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_psic_handles"] = []
        return state


def _rename_prefixes(
    state_dict: Mapping[str, Tensor], renames: Mapping[str, str]
) -> Dict[str, Tensor]:
    from collections import OrderedDict

    out = OrderedDict()
    for key, value in state_dict.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


_SHIELDED_CLASSES: Dict[type, type] = {}


def shielded_class(
    model_class: type,
    architecture: Optional[Architecture] = None,
    refresh: bool = False,
) -> type:
    """The shielded version of a CompressAI model class (created once, cached).

    Unregistered classes get :func:`~compressai_psic.registry.auto_injection_points`.
    """
    if issubclass(model_class, ShieldedMixin):
        return model_class
    if not refresh and model_class in _SHIELDED_CLASSES:
        return _SHIELDED_CLASSES[model_class]
    if not issubclass(model_class, CompressionModel):
        raise ValueError(
            f"{model_class.__name__} is not a compressai CompressionModel; only "
            "CompressionModel subclasses can be shielded"
        )
    if architecture is None:
        architecture = find_architecture(model_class) or Architecture(
            name=f"auto:{model_class.__module__}.{model_class.__qualname__}",
            model_class=model_class,
            injection_points=auto_injection_points,
        )
    cls = type(
        f"Shielded{model_class.__name__}",
        (ShieldedMixin, model_class),
        {
            "_psic_architecture": architecture,
            "_psic_base_class": model_class,
            "__module__": __name__,
            "__doc__": f"{model_class.__name__} with PSIC privacy-shielded decoding "
            f"(architecture {architecture.name!r}).\n\n"
            + (ShieldedMixin.__doc__ or ""),
        },
    )
    _SHIELDED_CLASSES[model_class] = cls
    return cls


def shield(
    model: CompressionModel,
    *,
    trigger_dim: Optional[int] = None,
    num_frequencies: int = 10,
    condition_encoder: Optional[ConditionEncoder] = None,
    injection_points: Optional[Sequence] = None,
) -> CompressionModel:
    """Upgrades a CompressAI model instance to its shielded version.

    Every base weight and entropy buffer is kept (copied: ``model`` itself is
    left unchanged). Trigger projections
    start at zero, so both decode paths give exactly the base model's output and
    ``compress()`` returns byte-identical strings.
    """
    if isinstance(model, ShieldedMixin):
        return model
    if not isinstance(model, CompressionModel):
        raise ValueError(
            f"shield() takes a compressai CompressionModel, got {type(model).__name__}"
        )
    cls = shielded_class(type(model))
    shielded = cls.__new__(cls)
    nn.Module.__init__(shielded)
    # Take over every attribute (modules, parameters, buffers, N, M, ...) of a
    # copy, so the caller's model keeps decoding as before.
    model = copy.deepcopy(model)
    for key, value in model.__dict__.items():
        if key in ("_modules", "_parameters", "_buffers"):
            getattr(shielded, key).update(value)
        elif key not in shielded.__dict__ or key in ("training",):
            shielded.__dict__[key] = value
    if condition_encoder is None:
        # Layouts that hold their own projections (psic-hy2018) fix the width.
        trigger_dim = trigger_dim or getattr(model, "trigger_dim", None) or 512
        condition_encoder = FourierConditionEncoder(trigger_dim, num_frequencies)
    param = next(model.parameters(), None)
    if param is not None:
        condition_encoder.to(device=param.device, dtype=param.dtype)
    shielded._init_shield(condition_encoder, injection_points)
    if param is not None:
        shielded.trigger_proj.to(device=param.device, dtype=param.dtype)
    shielded.train(model.training)
    return shielded
