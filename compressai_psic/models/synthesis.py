r"""The shielded synthesis transform: ``g_s`` that takes the trigger as an argument.

`"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML
2025, steers the synthesis with per-channel changes computed from a trigger. Here
the synthesis does that itself, layer by layer, with the trigger as an argument:

.. code-block:: none

    g_s(y_hat, trigger)
        for each layer of the base g_s (same modules, same state-dict keys):
            h = layer(h)                         a top-level injection point:
            h = h + P_k(trigger)                 ◄── bias (or h·(1 + S_k) + B_k)
        a point inside a block ("g_s.1.conv1"): the block's runner applies the
        block's own layers and modulates at its named sites

    g_s(y_hat)            no trigger given: the trigger of the call in progress
                          (see below), else the model's default condition

CompressAI's ``forward`` and ``decompress`` call ``self.g_s(y_hat)`` with one
argument, so a shielded model's public methods hand the trigger of a call to
``g_s`` through :func:`call_triggers`: a :class:`contextvars.ContextVar`, private
to the calling thread (and asyncio task), set for the duration of the call. It is
the only place where the trigger does not travel as an argument, and the reason
is CompressAI's own methods; nothing about a call is stored on a module.

Several triggers in one call (both paths from one ``y_hat``) run the layers
before the first point once and the rest once per trigger, on the batch as it
is, and concatenate the results: each decode is the very computation it is when
asked alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections import OrderedDict
from typing import (
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

import torch
import torch.nn as nn
from compressai.layers import ResidualBlock, ResidualBlockUpsample
from torch import Tensor

from .conditions import Condition, ConditionEncoder, trigger_of

__all__ = [
    "BLOCK_RUNNERS",
    "BlockRunner",
    "ShieldedSynthesis",
    "TriggerSource",
    "TriggeredSynthesis",
    "call_triggers",
    "modulate",
    "register_block_runner",
]

#: Modulates features at a named site of a block: ``(site, h) -> h'``.
SiteModulator = Callable[[str, Tensor], Tensor]


class BlockRunner(NamedTuple):
    """How to run a block with changes at named sites inside it.

    ``run(block, x, at)`` must compute exactly ``block(x)`` when ``at`` returns
    its input unchanged, calling ``at(site, h)`` on the output of each site.
    """

    sites: Tuple[str, ...]
    run: Callable[[nn.Module, Tensor, SiteModulator], Tensor]


#: Runners of blocks whose inner layers can be injection points, by block type.
BLOCK_RUNNERS: Dict[type, BlockRunner] = {}


def register_block_runner(block_type: type, sites: Sequence[str]):
    """Registers the runner of ``block_type`` (a decorator on the function).

    A maintainer whose synthesis has blocks of their own, and wants points inside
    them, writes the block's forward once more with ``at(site, h)`` on the
    outputs of the sites; a test should check that it equals ``block(x)`` when
    ``at`` changes nothing (see ``tests/models``)::

        @register_block_runner(MyBlock, sites=("conv1",))
        def run_my_block(block, x, at):
            return x + block.act(at("conv1", block.conv1(x)))
    """

    def decorator(run: Callable[[nn.Module, Tensor, SiteModulator], Tensor]):
        BLOCK_RUNNERS[block_type] = BlockRunner(tuple(sites), run)
        return run

    return decorator


@register_block_runner(ResidualBlock, sites=("conv1", "conv2"))
def run_residual_block(block: nn.Module, x: Tensor, at: SiteModulator) -> Tensor:
    # compressai.layers.ResidualBlock.forward, with the sites made visible (its one
    # leaky_relu module runs twice, so it cannot be a site).
    out = block.leaky_relu(at("conv1", block.conv1(x)))
    out = block.leaky_relu(at("conv2", block.conv2(out)))
    identity = x if block.skip is None else block.skip(x)
    return out + identity


@register_block_runner(ResidualBlockUpsample, sites=("subpel_conv", "conv"))
def run_residual_block_upsample(
    block: nn.Module, x: Tensor, at: SiteModulator
) -> Tensor:
    # compressai.layers.ResidualBlockUpsample.forward, with the sites made visible.
    out = block.leaky_relu(at("subpel_conv", block.subpel_conv(x)))
    out = block.igdn(at("conv", block.conv(out)))
    return out + block.upsample(x)


def modulate(h: Tensor, terms: Tensor, affine: bool, in_place: bool = False) -> Tensor:
    """``h + b`` (bias) or ``h·(1 + s) + b`` (affine), per channel.

    ``terms`` holds ``b`` or ``[s, b]`` per row; one row applies to every sample.
    ``in_place`` writes into ``h`` (the same values, bit for bit, without a
    full-size allocation); only for an ``h`` that nothing else holds.
    """
    view = (terms.size(0), -1) + (1,) * (h.dim() - 2)
    if affine:
        scale, bias = terms.chunk(2, dim=1)
        if in_place:
            return h.mul_(1 + scale.reshape(view)).add_(bias.reshape(view))
        return h * (1 + scale.reshape(view)) + bias.reshape(view)
    if in_place:
        return h.add_(terms.reshape(view))
    return h + terms.reshape(view)


def _writable(h: Tensor, source: Tensor) -> bool:
    """Whether a layer's output ``h`` may be modulated in place: a decode (no
    autograd on it) and a tensor of its own (not the layer's input ``source`` nor
    a view: a shared prefix feeds every condition of a multi-condition decode).
    ``torch.compile`` and ``torch.export`` turn the in-place ops into functional
    ones."""
    return not h.requires_grad and h is not source and h._base is None


class TriggerSource(NamedTuple):
    """What a synthesis needs to make the trigger of a condition by itself.

    Held by reference: the encoder is the model's ``global_cond`` (its weights
    live in the model's state dict, not twice).
    """

    encoder: ConditionEncoder
    anchored: bool
    default_condition: Condition

    def trigger(self, condition: Condition, batch_size: int, like: Tensor) -> Tensor:
        trigger = trigger_of(self.encoder, condition, batch_size, self.anchored)
        return trigger.to(device=like.device, dtype=like.dtype)


#: Triggers of the calls in progress in this thread/task, by ``id(synthesis)``.
#: Immutable mappings: a call sets a new one and resets it when it ends, so
#: nested and concurrent calls never see each other's triggers.
_CALL_TRIGGERS: contextvars.ContextVar[Mapping[int, Tuple[Tensor, ...]]] = (
    contextvars.ContextVar(
        "compressai_psic_call_triggers", default=types.MappingProxyType({})
    )
)


#: A function of the latent per trigger (or ``None``: the latent as it is), for
#: the keyed decodes of the calls in progress, by ``id(synthesis)``.
LatentShift = Optional[Callable[[Tensor], Tensor]]
_CALL_SHIFTS: contextvars.ContextVar[Mapping[int, Tuple[LatentShift, ...]]] = (
    contextvars.ContextVar(
        "compressai_psic_call_shifts", default=types.MappingProxyType({})
    )
)


@contextlib.contextmanager
def call_triggers(
    synthesis: nn.Module,
    triggers: Sequence[Tensor],
    shifts: Optional[Sequence[LatentShift]] = None,
) -> Iterator[None]:
    """Within the block, ``synthesis(y_hat)`` decodes ``triggers`` (one run each).

    For CompressAI's ``forward``/``decompress``, which call ``g_s(y_hat)``
    themselves; call ``synthesis(y_hat, trigger)`` directly where you can.
    ``shifts``, one per trigger, map the latent before that trigger's run (a
    keyed protected decode, :mod:`~compressai_psic.models.keyed`).
    """
    triggers = tuple(triggers)
    if shifts is not None and len(shifts) != len(triggers):
        raise ValueError(f"{len(shifts)} latent shifts for {len(triggers)} triggers")
    calls = dict(_CALL_TRIGGERS.get())
    calls[id(synthesis)] = triggers
    moved = dict(_CALL_SHIFTS.get())
    moved.pop(id(synthesis), None)
    if shifts is not None and any(s is not None for s in shifts):
        moved[id(synthesis)] = tuple(shifts)
    token = _CALL_TRIGGERS.set(types.MappingProxyType(calls))
    shift_token = _CALL_SHIFTS.set(types.MappingProxyType(moved))
    try:
        yield
    finally:
        _CALL_SHIFTS.reset(shift_token)
        _CALL_TRIGGERS.reset(token)


class TriggeredSynthesis(nn.Sequential):
    """A sequential synthesis whose ``forward`` takes an optional trigger.

    Subclasses implement :meth:`synthesize` (one run with one trigger, or
    ``None``: no change) and :meth:`projection_modules` (the projections
    ``P_k`` of the trigger, which the model trains, freezes and counts).
    Without a trigger argument, ``forward`` decodes the
    triggers of the call in progress (:func:`call_triggers`), else the default
    condition of its :class:`TriggerSource`, else no change at all (a base model
    without a condition encoder).
    """

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        self.trigger_source: Optional[TriggerSource] = None

    def synthesize(self, x: Tensor, trigger: Optional[Tensor]) -> Tensor:
        """``x`` decoded with ``trigger`` (``None``: the base synthesis)."""
        raise NotImplementedError

    def projection_modules(self) -> Iterator[nn.Module]:
        """The bias-free projections ``P_k`` of the trigger, in the order the
        synthesis applies them."""
        raise NotImplementedError

    def synthesize_each(self, x: Tensor, triggers: Sequence[Tensor]) -> Tensor:
        """One run per trigger on the same ``x``, concatenated along the batch."""
        return torch.cat([self.synthesize(x, t) for t in triggers])

    def forward(self, x: Tensor, trigger: Optional[Tensor] = None) -> Tensor:
        if trigger is not None:
            return self.synthesize(x, trigger)
        triggers = _CALL_TRIGGERS.get().get(id(self))
        if triggers is None:
            source = self.trigger_source
            if source is None:
                return self.synthesize(x, None)
            default = source.trigger(source.default_condition, 1, x)
            return self.synthesize(x, default)
        shifts = _CALL_SHIFTS.get().get(id(self))
        if shifts is not None:
            # Each run on its own latent, alone: what a single decode computes.
            return torch.cat(
                [
                    self.synthesize(x if shift is None else shift(x), trigger)
                    for trigger, shift in zip(triggers, shifts)
                ]
            )
        if len(triggers) == 1:
            return self.synthesize(x, triggers[0])
        return self.synthesize_each(x, triggers)

    def _check_rows(self, x: Tensor, trigger: Tensor) -> None:
        if trigger.size(0) not in (1, x.size(0)):
            raise ValueError(
                f"trigger has {trigger.size(0)} rows for a batch of {x.size(0)} "
                "(give one row, or one per sample)"
            )


class ShieldedSynthesis(TriggeredSynthesis):
    r"""A CompressAI ``nn.Sequential`` synthesis with trigger changes at its points.

    It holds the base synthesis's layers under their own names, so the state
    dict keys (``g_s.0.weight``, …) are the base model's. The projections ``P_k``
    stay in the model's ``trigger_proj`` (its state-dict keys too); the synthesis
    holds them by reference.

    Args:
        layers: the base synthesis (its children are adopted, not copied)
        points: module paths from the model root (``"g_s.4"``, ``"g_s.1.conv1"``)
        projections: ``trigger_proj``: one projection per point, by
            :attr:`~compressai_psic.models.registry.InjectionPoint.key`
        affine: scale and shift (``h·(1 + s) + b``) instead of shift only
    """

    def __init__(
        self,
        layers: nn.Sequential,
        points: Sequence[str],
        projections: Mapping[str, nn.Module],
        affine: bool = False,
    ):
        super().__init__()
        for name, layer in layers.named_children():
            self.add_module(name, layer)
        self.affine = bool(affine)
        self.points = tuple(points)
        # By reference, as a plain tuple: registered here too, the projections
        # would appear twice in the model's state dict.
        self.projections: Tuple[Tuple[str, nn.Module], ...] = tuple(
            (p, projections[p.replace(".", "-")]) for p in self.points
        )
        # Per top-level layer: (name, its point or None, runner of inner points).
        self._steps = self._plan(self.points)

    def _plan(self, points: Sequence[str]) -> List[tuple]:
        top: Dict[str, Optional[str]] = {}
        inner: Set[str] = set()  # layers with points inside
        for path in points:
            parts = path.split(".")
            if parts[0] != "g_s" or len(parts) < 2:
                raise ValueError(f'Injection point "{path}" is not inside g_s')
            name = parts[1]
            if name not in self._modules:
                raise ValueError(
                    f'Injection point "{path}" does not exist: g_s has layers '
                    f"{list(self._modules)}"
                )
            if len(parts) == 2:
                top[name] = path
                continue
            block = self._modules[name]
            runner = BLOCK_RUNNERS.get(type(block))
            site = ".".join(parts[2:])
            if runner is None or site not in runner.sites:
                allowed = [] if runner is None else list(runner.sites)
                raise ValueError(
                    f'Injection point "{path}" is inside a {type(block).__name__}, '
                    f"whose forward runs its layers itself; points inside it: "
                    f"{allowed or 'none registered'}. Use a layer of g_s "
                    '("g_s.' + name + '") or register the block with '
                    "compressai_psic.models.register_block_runner"
                )
            inner.add(name)
        steps = []
        for name, layer in self._modules.items():
            runner = BLOCK_RUNNERS.get(type(layer)) if name in inner else None
            steps.append((name, top.get(name), runner))
        return steps

    def __getitem__(self, index):
        """A layer (the base model's own), or for a slice the shielded synthesis
        of those layers with their points (names kept, so ``g_s[4:]`` decodes
        from ``g_s.4`` on with the same triggers)."""
        if not isinstance(index, slice):
            return super().__getitem__(index)
        layers = nn.Sequential(OrderedDict(list(self._modules.items())[index]))
        kept = dict(self.projections)
        points = [p for p in self.points if p.split(".")[1] in layers._modules]
        sliced = ShieldedSynthesis(
            layers, points, {p.replace(".", "-"): kept[p] for p in points}, self.affine
        )
        sliced.trigger_source = self.trigger_source
        return sliced

    def projection_modules(self) -> Iterator[nn.Module]:
        """The projections of the points (held by the model's ``trigger_proj``)."""
        for _, projection in self.projections:
            yield projection

    def extra_repr(self) -> str:
        kind = "affine" if self.affine else "bias"
        return f"points={list(self.points)}, modulation={kind}"

    def synthesize(self, x: Tensor, trigger: Optional[Tensor]) -> Tensor:
        return self._run(x, trigger, self._steps)

    def synthesize_each(self, x: Tensor, triggers: Sequence[Tensor]) -> Tensor:
        """The layers before the first point run once (on the batch as it is, so
        exactly as in a single decode), the rest once per trigger."""
        first = next(
            (i for i, (_, point, runner) in enumerate(self._steps) if point or runner),
            len(self._steps),
        )
        shared = self._run(x, None, self._steps[:first])
        rest = self._steps[first:]
        return torch.cat([self._run(shared, t, rest) for t in triggers])

    def synthesize_terms(self, x: Tensor, terms: Mapping[str, Tensor]) -> Tensor:
        """One run with the per-point changes given directly instead of through
        the projections: ``terms[point]`` holds ``b`` (bias) or ``[s, b]``
        (affine) per row, for any subset of :attr:`points`. The whole modulation
        space, as an attacker who searches it sees it
        (:mod:`~compressai_psic.evaluation.latent_attacks`)."""
        unknown = sorted(set(terms) - set(self.points))
        if unknown:
            raise ValueError(f"No injection points {unknown}: use {list(self.points)}")
        return self._run_terms(x, dict(terms), self._steps)

    def _run(self, x: Tensor, trigger: Optional[Tensor], steps: Sequence[tuple]):
        if trigger is None:
            terms: Dict[str, Tensor] = {}
        else:
            self._check_rows(x, trigger)
            trigger = trigger.to(x.dtype)
            terms = {p: proj(trigger) for p, proj in self.projections}
        return self._run_terms(x, terms, steps)

    def _run_terms(self, x: Tensor, terms: Dict[str, Tensor], steps: Sequence[tuple]):
        for name, point, runner in steps:
            layer = self._modules[name]
            source = x
            if runner is not None and terms:
                prefix = f"g_s.{name}."

                def at(
                    site: str, h: Tensor, prefix: str = prefix, source: Tensor = source
                ) -> Tensor:
                    change = terms.get(prefix + site)
                    if change is None:
                        return h
                    return modulate(h, change, self.affine, _writable(h, source))

                x = runner.run(layer, x, at)
            else:
                x = layer(x)
            change = terms.get(point) if point is not None else None
            if change is not None:
                x = modulate(x, change, self.affine, _writable(x, source))
        return x

    def plain(self) -> nn.Sequential:
        """The base synthesis: the same layers in an ``nn.Sequential``."""
        plain = nn.Sequential()
        for name, layer in self.named_children():
            plain.add_module(name, layer)
        return plain
