r"""Shielded models: CLTG triggers and dual-path decoding for CompressAI models.

A shielded model is a CompressAI class with :class:`ShieldedMixin` in front of
it, so it stays a :class:`~compressai.models.CompressionModel` (CDF buffers load
as usual). The rate path is untouched: ``compress()`` is the base model's and the
bitstream is the same for every decode. Only ``g_s`` is steered:

.. code-block:: none

        ┌───┐ y ┌───────────────┐ y_hat ┌────────────────────────────────┐
    x ─►┤g_a├─►─┤ entropy model ├──►────┤ g_s(y_hat, t): layer ⊕ … layer ⊕ ├─► x_hat
        └───┘   └───────────────┘       └────────────────▲───────────────┘
                                          ⊕ = + P_k(t) at point k
    condition ──► β ──► Fourier features ──► MLP ──► t(β) − t(0) = trigger t

β's path, file by file: ``decompress(strings, shape, condition)`` (this module)
turns the condition into the trigger (:func:`~compressai_psic.models.conditions.
trigger_of`), then runs the base model's ``decompress`` with that trigger set for
``g_s`` (:func:`~compressai_psic.models.synthesis.call_triggers`: CompressAI calls
``g_s(y_hat)`` itself); :class:`~compressai_psic.models.synthesis.
ShieldedSynthesis` applies the projections at its points. ``g_s(y_hat, trigger)``
can be called directly, and ``g_s(y_hat)`` alone decodes the default condition.
Nothing about a call is stored on the model, so one model serves many threads.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import KeyRequiredError
from . import guard, symbols
from .conditions import (
    BOTH_CONDITIONS,
    DEFAULT_CONDITION,
    Condition,
    ConditionEncoder,
    FourierConditionEncoder,
    as_condition_list,
    trigger_of,
)
from .folding import fold_synthesis
from .keyed import KeyedLatentShift
from .keys import ShieldKey, image_seeds, key_noise
from .portable import (
    PORTABLE_BY_DEFAULT,
    install_hyper_synthesis,
    portable_mode,
)
from .registry import Architecture, InjectionPoint, infer_channels
from .synthesis import (
    ShieldedSynthesis,
    TriggeredSynthesis,
    TriggerSource,
    call_triggers,
)
from .weights import ShieldedWeightsMixin

__all__ = [
    "AffineTriggerProjection",
    "FixedConditionSynthesis",
    "FoldedConditionSynthesis",
    "MODULATIONS",
    "ShieldedMixin",
    "TriggerProjection",
]

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


class AffineTriggerProjection(TriggerProjection):
    """The projection of an affine point: ``2·channels`` rows, the scales ``S``
    then the biases ``B``. Its state-dict entry ``_extra_state`` records the
    modulation, so a checkpoint says how its projections act."""

    def __init__(self, trigger_dim: int, channels: int):
        super().__init__(trigger_dim, 2 * channels)

    def get_extra_state(self) -> Dict[str, str]:
        return {"modulation": "affine"}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("modulation") != "affine":
            raise ValueError(f"Not the state of an affine projection: {state!r}")


def _get_submodule(root: nn.Module, path: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ValueError(
            f'Injection point "{path}" does not exist in {type(root).__name__}'
        ) from None


class FixedConditionSynthesis(nn.Module):
    """``g_s`` of one condition, its trigger held as a buffer: a deployable decoder.

    ``torch.export.export(net.synthesis_for("protected"), (y_hat,))`` gives a
    program that decodes the protected path and carries no condition encoder
    (see :meth:`ShieldedMixin.synthesis_for`).
    """

    def __init__(self, synthesis: TriggeredSynthesis, trigger: Tensor):
        super().__init__()
        self.synthesis = synthesis
        self.register_buffer("trigger", trigger.detach().clone())

    def forward(self, y_hat: Tensor) -> Tensor:
        return self.synthesis(y_hat, self.trigger)


class FoldedConditionSynthesis(FixedConditionSynthesis):
    """A :class:`FixedConditionSynthesis` whose ``synthesis`` is a plain
    ``nn.Sequential`` with the trigger folded into it
    (:meth:`ShieldedMixin.synthesis_for` with ``fold=True``); ``trigger`` is
    kept as a buffer for reference."""

    def forward(self, y_hat: Tensor) -> Tensor:
        return self.synthesis(y_hat)


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
        key_noise_channels (int): 0 (default) for the paper's public protected
            path; K > 0 makes the model *keyed*: its protected decode is
            ``g_s(ŷ + Δ(ŷ, noise), full)`` with noise derived from the
            publisher's key and the bitstream (:mod:`~compressai_psic.models.
            keyed`), and needs ``key=`` to decode
        key_hidden (int): width of the keyed shift's hidden layers (192)
        key_form (str): how the key noise enters the shift, ``"mix"`` (default)
            or ``"concat"`` (:data:`~compressai_psic.models.keyed.FORMS`)

    Conditions are ``"protected"`` (β = 1, the default), ``"full"`` (β = 0), a
    float in [0, 1] or a tensor of per-sample βs.
    """

    _psic_architecture: Architecture
    _psic_base_class: type
    default_condition: Condition = DEFAULT_CONDITION

    def __init__(
        self,
        *args: Any,
        plan: Optional[str] = None,
        injection_points: Optional[Sequence] = None,
        trigger_dim: int = 512,
        num_frequencies: int = 10,
        condition_encoder: Optional[ConditionEncoder] = None,
        modulation: str = "bias",
        key_noise_channels: int = 0,
        key_hidden: int = 192,
        key_form: str = "mix",
        **kwargs: Any,
    ):
        if "trigger_dim" in inspect.signature(self._psic_base_class).parameters:
            kwargs["trigger_dim"] = trigger_dim  # layouts whose blocks project
        super().__init__(*args, **kwargs)
        if condition_encoder is None:
            condition_encoder = FourierConditionEncoder(trigger_dim, num_frequencies)
        self._init_shield(condition_encoder, plan, injection_points, modulation)
        if key_noise_channels < 0:
            raise ValueError(
                f"key_noise_channels must be >= 0, got {key_noise_channels}"
            )
        if key_noise_channels:
            self.make_keyed(key_noise_channels, key_hidden, key_form)

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
        g_s = self.g_s
        if isinstance(g_s, ShieldedSynthesis):  # re-shielding a shielded copy
            g_s = g_s.plain()
            self.g_s = g_s
        if not isinstance(g_s, (nn.Sequential, TriggeredSynthesis)):
            raise ValueError(
                f"{type(self).__name__}.g_s is a {type(g_s).__name__}: a shielded "
                "synthesis is an nn.Sequential (or takes trigger= itself, "
                "trigger_argument=True)"
            )
        self._psic_modulation = modulation
        self.global_cond = condition_encoder
        self._init_entropy_checks()
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
        source = TriggerSource(
            condition_encoder, arch.anchor_full, self.default_condition
        )
        if arch.trigger_argument:
            if not isinstance(g_s, TriggeredSynthesis):
                raise ValueError(
                    f"{arch.name} is registered with trigger_argument=True, but its "
                    f"g_s ({type(g_s).__name__}) is not a TriggeredSynthesis"
                )
            self.trigger_proj = nn.ModuleDict()
            g_s.trigger_source = source
            return
        shielded = ShieldedSynthesis(
            g_s,
            [p.target for p in resolved],
            self.trigger_proj,
            affine=modulation == "affine",
        )
        shielded.trigger_source = source
        shielded.train(g_s.training)
        self.g_s = shielded

    def _init_entropy_checks(self) -> None:
        # The symbol digest (symbols.py) and portable entropy parameters
        # (portable.py): subclasses of the entropy models and of h_s with the
        # same state, set up once per model.
        symbols.install_symbol_taps(self)
        self._psic_portable = install_hyper_synthesis(self)

    def _resolve_points(
        self, points: Sequence[InjectionPoint], trigger_dim: int
    ) -> List[InjectionPoint]:
        arch = self._psic_architecture
        projections = nn.ModuleDict()
        resolved: List[InjectionPoint] = []
        targets = set()
        projection = (
            AffineTriggerProjection
            if self._psic_modulation == "affine"
            else TriggerProjection
        )
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
                projections[point.key] = projection(trigger_dim, channels)
            resolved.append(InjectionPoint(target, channels))
        if not arch.trigger_argument:
            self.trigger_proj = projections
        return resolved

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
    def supports_portable(self) -> bool:
        """Whether ``compress(x, portable=True)`` is available: the entropy
        parameters then come out bit-identical on every machine
        (:mod:`~compressai_psic.models.portable`)."""
        return bool(getattr(self, "_psic_portable", False))

    @property
    def portable_by_default(self) -> bool:
        """Whether ``psic compress`` writes this model's files portable unless
        told otherwise (:data:`~compressai_psic.models.portable.
        PORTABLE_BY_DEFAULT`: where it costs little decode time)."""
        return self.supports_portable and self.architecture in PORTABLE_BY_DEFAULT

    @property
    def architecture(self) -> str:
        """Registry name of this model's architecture."""
        return self._psic_architecture.name

    @property
    def key_shift(self) -> Optional[KeyedLatentShift]:
        """The keyed shift (:mod:`~compressai_psic.models.keyed`), or ``None``
        for the paper's public protected path. A property over the module
        registry, so models shielded in place (:func:`shield`) have it too."""
        return self._modules.get("key_shift")

    @property
    def is_keyed(self) -> bool:
        """Whether the protected decode needs the publisher's key."""
        return self.key_shift is not None

    def make_keyed(
        self, noise_channels: int = 32, hidden: int = 192, form: str = "mix"
    ) -> ShieldedMixin:
        """Gives the model a fresh keyed shift (replacing any): from now on its
        protected decode is ``g_s(ŷ + Δ(ŷ, noise(key, bitstream)), full)`` and
        needs ``key=``; train the shift with :mod:`compressai_psic.train.keyed`.
        Returns the model."""
        shift = KeyedLatentShift(
            _latent_channels(self.g_s), noise_channels, hidden, form
        )
        param = next(self.g_s.parameters(), None)
        if param is not None:
            shift.to(param.device)
        self._modules["key_shift"] = shift  # the property above reads it
        return self

    def keyed_synthesis(self, y_hat: Tensor, noise: Tensor) -> Tensor:
        """The keyed protected decode of ``y_hat`` under ``noise`` (unclamped):
        ``g_s(ŷ + Δ(ŷ, noise), full)``. Differentiable (training, attacks)."""
        shift = self._require_key_shift()
        return self.g_s(y_hat + shift(y_hat, noise), self.trigger("full", 1))

    def _require_key_shift(self) -> KeyedLatentShift:
        if self.key_shift is None:
            raise KeyRequiredError(
                "This model is not keyed: its protected path is the public trigger "
                "path (make_keyed() adds a keyed shift)"
            )
        return self.key_shift

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
        ``trigger_projections``, ``rate`` (analysis, hyper and entropy models),
        and ``key_shift`` for a keyed model."""
        encoder = {id(p) for p in self.global_cond.parameters()}
        projections = {id(p) for m in self.projection_modules() for p in m.parameters()}
        synthesis = {id(p) for p in self.g_s.parameters()}
        groups: Dict[str, List[str]] = {
            "synthesis": [],
            "trigger_encoder": [],
            "trigger_projections": [],
            "rate": [],
        }
        keyed = set()
        if self.key_shift is not None:
            groups["key_shift"] = []
            keyed = {id(p) for p in self.key_shift.parameters()}
        for name, param in self.named_parameters():
            if id(param) in keyed:
                groups["key_shift"].append(name)
            elif id(param) in encoder:
                groups["trigger_encoder"].append(name)
            elif id(param) in projections:
                groups["trigger_projections"].append(name)
            elif id(param) in synthesis:
                groups["synthesis"].append(name)
            else:
                groups["rate"].append(name)
        return groups

    # --------------------------------------------------------------- triggers
    def condition_betas(self, conditions: Sequence[Condition], batch: int) -> Tensor:
        """The per-sample βs of ``conditions`` (K·B values, condition-major)."""
        encoder = self.global_cond
        param = next(encoder.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        return torch.cat(
            [encoder.condition_values(c, batch, device) for c in conditions]
        )

    def trigger(self, condition: Condition = None, batch_size: int = 1) -> Tensor:
        """The trigger ``g_s`` gets for ``condition`` (``None``: the default).

        One row for a named condition or a single β (it applies to every
        sample), one per sample for a tensor of βs. Anchored architectures give
        ``t(β) − t(0)``, exactly zero on the full path.
        """
        if condition is None:
            condition = self.default_condition
        return trigger_of(
            self.global_cond,
            condition,
            batch_size,
            self._psic_architecture.anchor_full,
        )

    def synthesis_for(
        self, condition: Condition = None, fold: bool = False
    ) -> FixedConditionSynthesis:
        """``g_s`` with the trigger of ``condition`` fixed (``None``: the default).

        A module of the model's own layers (shared, not copied) for deployment:
        ``torch.export``, ONNX or ``torch.compile`` of one decoding path.

        ``fold=True`` folds the condition's constant change into the
        convolutions whose output it modulates
        (:func:`~compressai_psic.models.folding.fold_synthesis`: copies of
        those layers), so that the decoder does the base model's work; equal to
        the unfolded decoder up to float rounding. Where the layout does not
        allow it (points inside a block that are not a convolution's output,
        layouts whose blocks take the trigger themselves), the decoder is the
        unfolded one.
        """
        with torch.no_grad():
            trigger = self.trigger(condition)
        if fold and isinstance(self.g_s, ShieldedSynthesis):
            folded = fold_synthesis(self.g_s, trigger)
            if folded is not None:
                return FoldedConditionSynthesis(folded, trigger)
        return FixedConditionSynthesis(self.g_s, trigger)

    # ---------------------------------------------------------- public API
    def forward(self, x: Tensor, condition: Any = None) -> Dict[str, Any]:
        """Training/analysis forward pass.

        Args:
            x: images (B, 3, H, W) in [0, 1]
            condition: one condition (a name, a float β or a (B,) tensor of βs;
                ``None``: the default, protected), or a list/tuple of conditions
                (see :meth:`forward_multi`)

        Returns:
            ``{"x_hat", "likelihoods", "beta"}``: CompressAI's outputs and the (B,)
            βs the reconstruction was decoded with
        """
        if isinstance(condition, (list, tuple)):
            return self.forward_multi(x, condition)
        if condition is None:
            condition = self.default_condition
        with call_triggers(self.g_s, [self.trigger(condition, x.size(0))]):
            out = super().forward(x)
        out["beta"] = self.condition_betas([condition], x.size(0))
        return out

    def forward_multi(
        self, x: Tensor, conditions: Sequence[Condition] = BOTH_CONDITIONS
    ) -> Dict[str, Any]:
        """Forward with several conditions from one ``y_hat`` (``g_s`` once each).

        Returns:
            ``{"x_hat": [...], "likelihoods", "beta": [...]}``: one reconstruction
            and one (B,) tensor of βs per condition, in the order given
        """
        conditions = as_condition_list(conditions)
        triggers = [self.trigger(c, x.size(0)) for c in conditions]
        with call_triggers(self.g_s, triggers):
            out = super().forward(x)
        k = len(conditions)
        out["x_hat"] = list(out["x_hat"].chunk(k, dim=0))
        out["beta"] = list(self.condition_betas(conditions, x.size(0)).chunk(k))
        return out

    def compress(
        self, x: Tensor, *args: Any, portable: bool = False, **kwargs: Any
    ) -> Dict[str, Any]:
        """The base model's ``compress``, after refusing non-finite or
        out-of-range pixels (NaN makes CompressAI's entropy coder loop forever).

        Returns CompressAI's ``{"strings", "shape"}`` plus ``"symbols_digest"``
        (CRC-32 of the coded symbols, :mod:`~compressai_psic.models.symbols`;
        ``None`` when the entropy models are not CompressAI's) and
        ``"portable"``. ``portable=True`` computes the entropy parameters in
        integer arithmetic (:mod:`~compressai_psic.models.portable`): decode it
        with ``portable=True`` on any machine.

        Raises:
            ValueError: for bad pixels, or ``portable=True`` on a model that
                does not support it (see :attr:`supports_portable`).
        """
        guard.check_compress_input(x)
        self._check_portable(portable)
        with symbols.record_symbols("encode") as recorder:
            with portable_mode(portable):
                out = super().compress(x, *args, **kwargs)
        out["symbols_digest"] = recorder.digest
        out["portable"] = bool(portable)
        return out

    def _check_portable(self, portable: bool) -> None:
        if portable and not self.supports_portable:
            raise ValueError(
                f"{self.architecture} cannot code portable bitstreams (its entropy "
                "parameters come from a context model); use portable=False"
            )

    def _entropy_decode(
        self,
        strings: List,
        shape: Any,
        triggers: List[Tensor],
        shifts: Optional[List[Any]],
        portable: bool,
        symbols_digest: Optional[int],
        kwargs: Dict[str, Any],
    ) -> Dict[str, Any]:
        """The base model's ``decompress`` with ``triggers`` (and a keyed
        model's latent ``shifts``), its symbols checked against
        ``symbols_digest`` before the image is returned."""
        self._check_portable(portable)
        with symbols.record_symbols("decode") as recorder, portable_mode(portable):
            with call_triggers(self.g_s, triggers, shifts):
                out = super().decompress(strings, shape, **kwargs)
        # The digest first: it names the cause (other entropy parameters).
        symbols.check_symbols_digest(symbols_digest, recorder.digest, portable)
        symbols.check_streams(recorder)
        guard.check_finite(out["x_hat"])
        out["symbols_digest"] = recorder.digest
        return out

    def decompress(
        self,
        strings: List,
        shape: Any,
        condition: Condition = None,
        *,
        key: Optional[ShieldKey] = None,
        max_pixels: Optional[int] = guard.MAX_DECODE_PIXELS,
        portable: bool = False,
        symbols_digest: Optional[int] = None,
        **kwargs: Any,
    ) -> Dict[str, Tensor]:
        """Decodes one reconstruction; with no condition, the **protected** one.

        A keyed model (:attr:`is_keyed`) decodes ``"protected"`` only with the
        publisher's ``key`` (:class:`~compressai_psic.models.keys.ShieldKey`) and
        ``"full"`` without one; without the key its protected decode raises
        :class:`~compressai_psic.errors.KeyRequiredError`, never decodes
        something else. A key given to a model that is not keyed raises too.

        The strings and ``shape`` are checked against the model first
        (:mod:`~compressai_psic.models.guard`): anything that does not fit raises
        a :class:`~compressai_psic.errors.PSICFormatError` before the native
        entropy decoder sees a byte, a decode of more than ``max_pixels`` pixels
        (``None``: no limit) raises a ``PixelLimitError``, and a non-finite
        decode raises too.

        ``portable`` must be what ``compress`` was given. With the
        ``symbols_digest`` that ``compress`` returned, a decode whose symbols
        differ raises :class:`~compressai_psic.errors.DesyncError` instead of
        returning a wrong image. Returns ``{"x_hat", "symbols_digest"}``.
        """
        padded = guard.guard_decode_inputs(self, strings, shape, max_pixels)
        # The key noise hashes the strings as written, not the guard's padding.
        triggers, shifts = self._decode_plan([condition], strings, shape, key)
        return self._entropy_decode(
            padded, shape, triggers, shifts, portable, symbols_digest, kwargs
        )

    def _decode_plan(
        self,
        conditions: Sequence[Condition],
        strings: List,
        shape: Any,
        key: Optional[ShieldKey],
    ) -> Tuple[List[Tensor], Optional[List[Any]]]:
        """The trigger of each condition and, for a keyed model, the latent shift
        of each (the keyed shift for ``"protected"``, none for ``"full"``)."""
        batch = len(strings[0])
        if self.key_shift is None:
            if key is not None:
                raise KeyRequiredError(
                    "This model is not keyed; key= (psic --key-file) applies to keyed "
                    "models only"
                )
            return [self.trigger(c, batch) for c in conditions], None
        roles = [_keyed_role(c) for c in conditions]
        if "protected" in roles and key is None:
            raise KeyRequiredError(
                "This model's protected decode needs the publisher's key: pass "
                "key=read_key_file(PATH) (psic decompress --key-file PATH); "
                'condition="full" needs none'
            )
        if key is not None and not isinstance(key, ShieldKey):
            raise KeyRequiredError(
                f"key must be a ShieldKey (read_key_file or ShieldKey.generate), "
                f"got {type(key).__name__}"
            )
        seeds = image_seeds(key, strings, shape) if key is not None else []
        shift = self.key_shift

        def protect(y_hat: Tensor) -> Tensor:
            size = y_hat.shape[-2:]
            noise = key_noise(seeds, shift.noise_channels, size, y_hat)
            return y_hat + shift(y_hat, noise)

        full = self.trigger("full", batch)
        return [full] * len(roles), [
            protect if r == "protected" else None for r in roles
        ]

    def decompress_multi(
        self,
        strings: List,
        shape: Any,
        conditions: Sequence[Condition] = BOTH_CONDITIONS,
        *,
        key: Optional[ShieldKey] = None,
        max_pixels: Optional[int] = guard.MAX_DECODE_PIXELS,
        portable: bool = False,
        symbols_digest: Optional[int] = None,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """Decodes several conditions from one bitstream.

        Entropy decoding runs once; ``g_s`` runs once per condition on the same
        latents, so each decode equals the one :meth:`decompress` gives for that
        condition. Returns ``{"x_hat": [...], "symbols_digest"}``, the images
        in the order of ``conditions``; ``portable`` and ``symbols_digest`` as
        for :meth:`decompress`.
        """
        conditions = as_condition_list(conditions)
        padded = guard.guard_decode_inputs(self, strings, shape, max_pixels)
        triggers, shifts = self._decode_plan(conditions, strings, shape, key)
        out = self._entropy_decode(
            padded, shape, triggers, shifts, portable, symbols_digest, kwargs
        )
        out["x_hat"] = list(out["x_hat"].chunk(len(conditions), dim=0))
        return out

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_psic_portable" not in self.__dict__:
            # Pickled before the symbol digest and portable mode existed.
            self._init_entropy_checks()

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


def _latent_channels(g_s: nn.Module) -> int:
    """Channels of the latent ``g_s`` decodes: its first convolution's input."""
    for module in g_s.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return int(module.in_channels)
    raise ValueError(f"Cannot find the latent channels of {type(g_s).__name__}")


#: The conditions a keyed model decodes, by role.
_KEYED_ROLES = {"protected": "protected", "full": "full", 1.0: "protected", 0.0: "full"}


def _keyed_role(condition: Condition) -> str:
    """``"protected"`` or ``"full"``: the only two decodes of a keyed model."""
    if condition is None:
        condition = DEFAULT_CONDITION
    if isinstance(condition, (bool, Tensor)) or not isinstance(
        condition, (str, int, float)
    ):
        role = None
    else:
        role = _KEYED_ROLES.get(condition)
    if role is None:
        raise ValueError(
            "A keyed model decodes 'protected' (with key=) or 'full', got "
            f"{condition!r}"
        )
    return role
