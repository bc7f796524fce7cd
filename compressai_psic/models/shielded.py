r"""Shielded models: CLTG triggers and dual-path decoding for CompressAI models.

A shielded model is a CompressAI class with :class:`ShieldedMixin` in front of
it, so it stays a :class:`~compressai.models.CompressionModel` (CDF buffers load
as usual). The rate path is untouched: ``compress()`` is the base model's and the
bitstream is the same for every decode. Only ``g_s`` is steered:

.. code-block:: none

              ┌───┐ y ┌───────────────┐ y_hat ┌───────────────────────────────┐
        x ──►─┤g_a├─►─┤ entropy model ├──►────┤ g_s: layer ⊕ layer ⊕ … layer ├─► x_hat
              └───┘   └───────────────┘       └──────────▲───────▲───────────┘
                                                bias_k = P_k(t(β)) − P_k(t(0))
        condition ──► β ──► Fourier features ──► MLP ──► trigger t ──┘

The condition of a call travels with the call: the public methods take it as an
argument and hand it to the synthesis through a :class:`contextvars.ContextVar`,
which is private to the calling thread (and asyncio task). Nothing about a call
is stored on the model, so one model can serve many threads at once, each
getting exactly the decode it asked for.

Decoding several conditions from one bitstream runs the entropy decoding once;
``g_s`` runs once on a batch that is repeated per condition only where the first
trigger bias enters, so the layers before it are shared.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from . import guard
from .calls import CALLS, SynthesisCall, set_call
from .conditions import (
    Condition,
    ConditionEncoder,
    FourierConditionEncoder,
    as_condition_list,
)
from .registry import (
    Architecture,
    InjectionPoint,
    infer_channels,
)
from .weights import ShieldedWeightsMixin

__all__ = ["MODULATIONS", "ShieldedMixin", "TriggerProjection"]

#: How a trigger acts at an injection point: ``bias`` (the paper) adds
#: ``P(t)``; ``affine`` also scales each channel by ``1 + S(t)``.
MODULATIONS = ("bias", "affine")


class TriggerProjection(nn.Linear):
    """Bias-free ``Linear(trigger_dim → channels)``, zero at creation.

    Zero weights make a freshly shielded model decode exactly as its base model.
    """

    def __init__(self, trigger_dim: int, channels: int):
        super().__init__(trigger_dim, channels, bias=False)
        nn.init.zeros_(self.weight)


def _get_submodule(root: nn.Module, path: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ValueError(
            f'Injection point "{path}" does not exist in {type(root).__name__}'
        ) from None


class ShieldedMixin(ShieldedWeightsMixin):
    r"""Adds CLTG triggers and dual-path decoding to a CompressAI model class.

    `"Privacy-Shielded Image Compression: Defending Against Exploitation from
    Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_,
    ICML 2025: Conditional Latent Trigger Generation turns a condition β into a
    trigger vector whose projections are added as per-channel biases inside the
    synthesis transform; β = 1 decodes the protected image, β = 0 the full one.

    Put it first in the bases of a module-level class and register the class
    (:func:`~compressai_psic.models.registry.register_architecture`), or use
    :func:`shield` on an instance. Extra constructor keyword arguments:

    Args:
        plan (str): the registered injection plan (default: the architecture's
            ``default_plan``, which biases every synthesis stage)
        injection_points (list): explicit points instead of a plan
        trigger_dim (int): width of the trigger vector (512 in the paper)
        num_frequencies (int): Fourier frequencies of β (10 in the paper)
        condition_encoder (ConditionEncoder): replaces the default
            :class:`~compressai_psic.models.conditions.FourierConditionEncoder`
        modulation (str): ``"bias"`` (the paper: ``h + b(β)``) or ``"affine"``
            (``h·(1 + s(β)) + b(β)``: a change proportional to the features, so
            it depends on the image even after linear layers; anchored at β = 0
            like the bias)

    Conditions are ``"protected"`` (β = 1, the default), ``"full"`` (β = 0), a
    float in [0, 1] or a tensor of per-sample βs.
    """

    _psic_architecture: Architecture
    _psic_base_class: type
    default_condition: Condition = "protected"

    def __init__(
        self,
        *args: Any,
        plan: Optional[str] = None,
        injection_points: Optional[Sequence] = None,
        trigger_dim: int = 512,
        num_frequencies: int = 10,
        condition_encoder: Optional[ConditionEncoder] = None,
        modulation: str = "bias",
        **kwargs: Any,
    ):
        if "trigger_dim" in inspect.signature(self._psic_base_class).parameters:
            kwargs["trigger_dim"] = trigger_dim  # layouts whose blocks project
        super().__init__(*args, **kwargs)
        if condition_encoder is None:
            condition_encoder = FourierConditionEncoder(trigger_dim, num_frequencies)
        self._init_shield(condition_encoder, plan, injection_points, modulation)

    # ------------------------------------------------------------------ setup
    def _init_shield(
        self,
        condition_encoder: ConditionEncoder,
        plan: Optional[str],
        injection_points: Optional[Sequence],
        modulation: str = "bias",
    ) -> None:
        arch = self._psic_architecture
        if modulation not in MODULATIONS:
            raise ValueError(
                f'Invalid modulation "{modulation}": use one of {list(MODULATIONS)}'
            )
        if modulation != "bias" and arch.trigger_argument:
            raise ValueError(f"{arch.name} adds biases only (its blocks' own)")
        self._psic_modulation = modulation
        self.global_cond = condition_encoder
        if injection_points is not None:
            if plan is not None:
                raise ValueError("Give plan= or injection_points=, not both")
            points = [
                p if isinstance(p, InjectionPoint) else InjectionPoint(p)
                for p in injection_points
            ]
            plan = arch.plan_of(self, [p.target for p in points])
        else:
            plan = arch.default_plan if plan is None else plan
            points = arch.points_for(self, plan)
        if not points:
            raise ValueError("At least one injection point is required")
        resolved = self._resolve_points(points, condition_encoder.trigger_dim)
        self._psic_plan = plan
        self._psic_points = resolved
        if arch.trigger_argument:
            self.trigger_proj = nn.ModuleDict()
        else:
            self._check_single_run(resolved)
        self._psic_fork = self._fork_site(resolved)
        self._install_hooks()

    def _resolve_points(
        self, points: Sequence[InjectionPoint], trigger_dim: int
    ) -> List[InjectionPoint]:
        arch = self._psic_architecture
        projections = nn.ModuleDict()
        resolved: List[InjectionPoint] = []
        targets = set()
        for point in points:
            target = point.target
            if not target.startswith("g_s.") or "-" in target:
                raise ValueError(
                    f'Injection point "{target}" is not a module path inside g_s: '
                    "triggers steer the synthesis transform only"
                )
            if target in targets:
                raise ValueError(f'Injection point "{target}" is listed twice')
            targets.add(target)
            module = _get_submodule(self, target)
            channels = point.channels or infer_channels(module)
            if channels is None:
                raise ValueError(
                    f'Cannot infer the channels of injection point "{target}" '
                    f"({type(module).__name__}); give InjectionPoint(target, channels)"
                )
            if not arch.trigger_argument:
                width = channels * (2 if self._psic_modulation == "affine" else 1)
                projections[point.key] = TriggerProjection(trigger_dim, width)
            resolved.append(InjectionPoint(target, channels))
        if not arch.trigger_argument:
            self.trigger_proj = projections
        return resolved

    def _check_single_run(self, points: Sequence[InjectionPoint]) -> None:
        """Refuses points whose module runs more than once per synthesis.

        A module called twice (CompressAI's ``ResidualBlock`` applies one
        ``leaky_relu`` after both of its convolutions) would get its bias twice.
        One ``g_s`` pass on a tiny latent counts the calls.
        """
        first_conv = next(
            (m for m in self.g_s.modules() if hasattr(m, "in_channels")), None
        )
        param = next(self.g_s.parameters(), None)
        if first_conv is None or param is None:
            return
        counts = {p.target: 0 for p in points}
        handles = []
        for point in points:

            def count(module, args, out, target=point.target):
                counts[target] += 1

            module = _get_submodule(self, point.target)
            handles.append(module.register_forward_hook(count))
        probe = torch.zeros(
            1, first_conv.in_channels, 4, 4, device=param.device, dtype=param.dtype
        )
        try:
            with torch.no_grad():
                self.g_s(probe)
        except Exception:  # the runtime check in _add_bias still guards these
            return
        finally:
            for handle in handles:
                handle.remove()
        repeated = sorted(t for t, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(
                f"Injection points {repeated} run more than once per synthesis "
                "(a shared module such as ResidualBlock.leaky_relu); use a module "
                "that runs once, e.g. the convolution before it"
            )

    def _fork_site(self, points: Sequence[InjectionPoint]) -> Tuple[str, str]:
        """Where a multi-condition batch is repeated: ``("post", path)`` at the
        output of the first point, or ``("pre", path)`` at a module's input.

        A top-level child of a sequential ``g_s`` can fork at its output: nothing
        bypasses a Sequential boundary. A point nested in a block forks at the
        block's input so its skip connection sees the repeated batch too.
        """
        g_s = self.g_s
        if self._psic_architecture.trigger_argument or not isinstance(
            g_s, nn.Sequential
        ):
            return ("pre", "g_s")
        order = {f"g_s.{name}": i for i, name in enumerate(g_s._modules)}

        def top_level(path: str) -> str:
            return ".".join(path.split(".")[:2])

        first = min(points, key=lambda p: order.get(top_level(p.target), 1 << 30))
        top = top_level(first.target)
        if first.target == top:
            return ("post", top)
        return ("pre", top)

    def _install_hooks(self) -> None:
        self.g_s.register_forward_pre_hook(self._psic_enter_synthesis, with_kwargs=True)
        self.g_s.register_forward_hook(self._psic_leave_synthesis, always_call=True)
        kind, site = self._psic_fork
        if kind == "pre" and site != "g_s":
            fork = _get_submodule(self, site)
            fork.register_forward_pre_hook(self._psic_fork_input)
        if self._psic_architecture.trigger_argument:
            return
        for point in self._psic_points:
            module = _get_submodule(self, point.target)
            # The hook finds its point through the module (survives deepcopy).
            module._psic_target = point.target
            module.register_forward_hook(self._psic_add_bias)

    # ------------------------------------------------------------- properties
    @property
    def injection_points(self) -> List[InjectionPoint]:
        """The resolved injection points (target, channels)."""
        return list(self._psic_points)

    @property
    def plan(self) -> str:
        """Name of the injection plan (``"custom"`` for explicit points)."""
        return self._psic_plan

    @property
    def modulation(self) -> str:
        """``"bias"`` (the paper: ``h + b``) or ``"affine"`` (``h·(1 + s) + b``)."""
        return self._psic_modulation

    @property
    def architecture(self) -> str:
        """Registry name of this model's architecture."""
        return self._psic_architecture.name

    def projection_modules(self) -> List[nn.Module]:
        """The bias-free projections P_k, one per injection point."""
        if self._psic_architecture.trigger_argument:
            return list(self.g_s.projection_modules())
        return [self.trigger_proj[p.key] for p in self._psic_points]

    def trigger_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the condition encoder and of every projection."""
        seen = set()
        for module in [self.global_cond] + self.projection_modules():
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield param

    def parameter_groups(self) -> Dict[str, List[str]]:
        """Parameter names by role: ``synthesis``, ``trigger_encoder``,
        ``trigger_projections``, ``rate`` (analysis, hyper and entropy models)."""
        encoder = {id(p) for p in self.global_cond.parameters()}
        projections = {id(p) for m in self.projection_modules() for p in m.parameters()}
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

    # --------------------------------------------------------------- triggers
    def _encoder_dtype(self, like: Tensor) -> torch.dtype:
        param = next(self.global_cond.parameters(), None)
        return param.dtype if param is not None else like.dtype

    def condition_betas(self, conditions: Sequence[Condition], batch: int) -> Tensor:
        """The per-sample βs of ``conditions`` (K·B values, condition-major)."""
        encoder = self.global_cond
        param = next(encoder.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        return torch.cat(
            [encoder.condition_values(c, batch, device) for c in conditions]
        )

    def _triggers(self, values: Tensor) -> Tensor:
        """Trigger of each value, one encoder call per distinct value.

        GEMM results depend on the batch layout: computing each distinct β alone
        keeps a decode independent of what else is decoded with it. Anchored
        architectures return ``t(β) − t(0)`` (exactly zero for the full path).
        """
        encoder = self.global_cond
        unique, inverse = torch.unique(values, return_inverse=True)
        anchored = self._psic_architecture.anchor_full
        rows = []
        zero = None
        if anchored:
            full = encoder.condition_values(
                encoder.full_condition, 1, values.device, values.dtype
            )
            zero = (full, encoder(full))
        for value in unique:
            value = value.reshape(1)
            trigger = encoder(value)
            if zero is not None:
                if bool(value == zero[0]):
                    trigger = torch.zeros_like(trigger)
                else:
                    trigger = trigger - zero[1]
            rows.append(trigger)
        return torch.cat(rows)[inverse]

    def _start(self, call: SynthesisCall, like: Tensor) -> None:
        batch = like.size(0)
        device = like.device
        dtype = self._encoder_dtype(like)
        encoder = self.global_cond
        values = torch.cat(
            [encoder.condition_values(c, batch, device, dtype) for c in call.conditions]
        )
        trigger = self._triggers(values)
        call.batch_size = batch
        call.forked = len(call.conditions) == 1
        call.seen = set()
        call.betas = values
        call.trigger = trigger.to(like.dtype)
        if not self._psic_architecture.trigger_argument:
            call.biases = {
                p.target: self.trigger_proj[p.key](trigger).to(like.dtype)
                for p in self._psic_points
            }
        call.running = True

    def _modulate(self, out: Tensor, terms: Tensor, in_place: bool) -> Tensor:
        """``out + b`` (bias) or ``out·(1 + s) + b`` (affine), per channel;
        ``terms`` holds ``b`` or ``[s, b]`` per sample (rows match ``out``)."""
        view = (terms.size(0), -1) + (1,) * (out.dim() - 2)
        if self._psic_modulation == "affine":
            scale, bias = terms.chunk(2, dim=1)
            if in_place:
                return out.mul_(1 + scale.reshape(view)).add_(bias.reshape(view))
            return out * (1 + scale.reshape(view)) + bias.reshape(view)
        if in_place:
            return out.add_(terms.reshape(view))
        return out + terms.reshape(view)

    # ------------------------------------------------------------------ hooks
    def _psic_enter_synthesis(self, module: nn.Module, args: Tuple, kwargs: Dict):
        call = CALLS.get().get(id(self))
        if call is None or call.running:
            # g_s called directly (not through forward/decompress): the default.
            call = SynthesisCall([self.default_condition])
            call.token = set_call(self, call)
        x = args[0]
        self._start(call, x)
        if self._psic_fork == ("pre", "g_s") and not call.forked:
            call.forked = True
            args = (x.repeat(len(call.conditions), *([1] * (x.dim() - 1))),) + args[1:]
        if self._psic_architecture.trigger_argument and kwargs.get("trigger") is None:
            kwargs = dict(kwargs, trigger=call.trigger)
        return args, kwargs

    def _psic_leave_synthesis(self, module: nn.Module, args: Tuple, out: Any):
        call = CALLS.get().get(id(self))
        if call is None:
            return None
        call.running = False
        if call.token is not None:
            token, call.token = call.token, None
            CALLS.reset(token)
        return None

    def _psic_fork_input(self, module: nn.Module, args: Tuple):
        call = CALLS.get().get(id(self))
        if call is None or not call.running or call.forked:
            return None
        call.forked = True
        x = args[0]
        return (x.repeat(len(call.conditions), *([1] * (x.dim() - 1))),) + args[1:]

    def _psic_add_bias(self, module: nn.Module, args: Tuple, out: Tensor) -> Tensor:
        target = module._psic_target
        call = CALLS.get().get(id(self))
        if call is None or not call.running:
            # The module runs outside a synthesis pass (``net.g_s[4](h)``, a slice
            # of g_s): it decodes the default condition for its own batch.
            values = self.condition_betas([self.default_condition], out.size(0))
            point = next(p for p in self._psic_points if p.target == target)
            terms = self.trigger_proj[point.key](
                self._triggers(values.to(out.device, self._encoder_dtype(out)))
            ).to(out.dtype)
            return self._modulate(out, terms, in_place=False)
        if target in call.seen:
            raise RuntimeError(
                f"Injection point {target} ran twice in one synthesis pass; its "
                "bias would be added twice. Choose a module that runs once."
            )
        call.seen.add(target)
        terms = call.biases[target]
        if not call.forked:
            # First point after a shared prefix: one copy of the features per
            # condition, each with its own bias.
            call.forked = True
            out = out.repeat(len(call.conditions), *([1] * (out.dim() - 1)))
            return self._modulate(out, terms, in_place=True)
        if terms.size(0) != out.size(0):
            raise RuntimeError(
                f"Batch mismatch at {target}: features {out.size(0)}, "
                f"biases {terms.size(0)}"
            )
        # Decoding skips a full-size allocation (autograd is not involved).
        return self._modulate(out, terms, in_place=not out.requires_grad)

    # ----------------------------------------------------------- conditions
    @contextlib.contextmanager
    def _conditioned(self, conditions: Sequence[Condition]) -> Iterator[SynthesisCall]:
        """Makes ``g_s`` decode ``conditions`` within this thread's context."""
        call = SynthesisCall(as_condition_list(conditions))
        token = set_call(self, call)
        try:
            yield call
        finally:
            CALLS.reset(token)

    @staticmethod
    def _split(x: Tensor, count: int) -> List[Tensor]:
        return list(x.chunk(count, dim=0))

    # ---------------------------------------------------------- public API
    def forward(self, x: Tensor, condition: Any = "protected") -> Dict[str, Any]:
        """Training/analysis forward pass.

        Args:
            x: images (B, 3, H, W) in [0, 1]
            condition: one condition (a name, a float β or a (B,) tensor of βs), or
                a list/tuple of conditions (see :meth:`forward_multi`)

        Returns:
            ``{"x_hat", "likelihoods", "beta"}``: CompressAI's outputs and the (B,)
            βs the reconstruction was decoded with
        """
        if isinstance(condition, (list, tuple)):
            return self.forward_multi(x, condition)
        with self._conditioned([condition]) as call:
            out = super().forward(x)
        out["beta"] = self._betas_of(call, x.size(0))
        return out

    def forward_multi(
        self, x: Tensor, conditions: Sequence[Condition] = ("full", "protected")
    ) -> Dict[str, Any]:
        """Forward with several conditions from one ``y_hat``.

        Returns:
            ``{"x_hat": [...], "likelihoods", "beta": [...]}``: one reconstruction
            and one (B,) tensor of βs per condition, in the order given
        """
        with self._conditioned(conditions) as call:
            out = super().forward(x)
        k = len(call.conditions)
        out["x_hat"] = self._split(out["x_hat"], k)
        out["beta"] = self._split(self._betas_of(call, x.size(0)), k)
        return out

    def _betas_of(self, call: SynthesisCall, batch: int) -> Tensor:
        if call.betas is not None:
            return call.betas
        return self.condition_betas(call.conditions, batch)

    def compress(self, x: Tensor, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """The base model's ``compress``, after refusing non-finite or
        out-of-range pixels (NaN makes CompressAI's entropy coder loop forever)."""
        guard.check_compress_input(x)
        return super().compress(x, *args, **kwargs)

    def decompress(
        self, strings: List, shape: Any, condition: Condition = None, **kwargs: Any
    ) -> Dict[str, Tensor]:
        """Decodes one reconstruction; with no condition, the **protected** one.

        The strings and ``shape`` are checked against the model first
        (:mod:`~compressai_psic.models.guard`): anything that does not fit raises
        a :class:`~compressai_psic.errors.PSICFormatError` before the native
        entropy decoder sees a byte, and a non-finite decode raises too.
        """
        strings = guard.guard_decode_inputs(self, strings, shape)
        if condition is None:
            condition = self.default_condition
        with self._conditioned([condition]):
            out = super().decompress(strings, shape, **kwargs)
        guard.check_finite(out["x_hat"])
        return out

    def decompress_multi(
        self,
        strings: List,
        shape: Any,
        conditions: Sequence[Condition] = ("protected", "full"),
        **kwargs: Any,
    ) -> Dict[str, List[Tensor]]:
        """Decodes several conditions from one bitstream.

        Entropy decoding runs once; ``g_s`` runs once on the stacked latents
        (repeated where the first bias enters). Returns ``{"x_hat": [...]}`` in
        the order of ``conditions``.
        """
        strings = guard.guard_decode_inputs(self, strings, shape)
        with self._conditioned(conditions) as call:
            out = super().decompress(strings, shape, **kwargs)
        guard.check_finite(out["x_hat"])
        return {"x_hat": self._split(out["x_hat"], len(call.conditions))}

    def __reduce_ex__(self, protocol: int):
        if not getattr(type(self), "_psic_dynamic", False):
            return super().__reduce_ex__(protocol)
        # A class built at run time is not importable: its maker gave it the
        # function that rebuilds it from its base class.
        return (
            type(self)._psic_rebuild,
            (self._psic_base_class, self._psic_architecture.name),
            self.__dict__,
        )
