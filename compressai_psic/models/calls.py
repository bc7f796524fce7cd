r"""Call-local state of a shielded model's synthesis pass.

The condition of a call travels with the call: the public methods put a
:class:`SynthesisCall` into a :class:`contextvars.ContextVar`, which is private to
the calling thread (and asyncio task), and the hooks read it there. Nothing
about a call is stored on the model, so one model serves many threads at once.
"""

from __future__ import annotations

import contextvars
import types
from typing import Dict, Mapping, Optional, Sequence

import torch.nn as nn
from torch import Tensor

from .conditions import Condition

__all__ = ["CALLS", "SynthesisCall", "set_call"]


class SynthesisCall:
    """State of one synthesis run, private to the thread that runs it.

    ``conditions`` is what the caller asked for; the rest is filled in when
    ``g_s`` starts: the per-sample βs, the trigger and the bias of every point.
    """

    __slots__ = (
        "conditions",
        "running",
        "token",
        "batch_size",
        "betas",
        "trigger",
        "biases",
        "forked",
        "seen",
    )

    def __init__(self, conditions: Sequence[Condition]):
        self.conditions = list(conditions)
        self.running = False
        self.token: Optional[contextvars.Token] = None
        self.batch_size = 0
        self.betas: Optional[Tensor] = None
        self.trigger: Optional[Tensor] = None
        self.biases: Dict[str, Tensor] = {}
        self.forked = len(self.conditions) == 1
        self.seen: set = set()


#: Active calls of this thread/task, by ``id(model)``. Immutable mappings: a call
#: sets a new one and resets it afterwards, so nested and concurrent calls never
#: see each other's state.
CALLS: contextvars.ContextVar[Mapping[int, SynthesisCall]] = contextvars.ContextVar(
    "compressai_psic_calls", default=types.MappingProxyType({})
)


def set_call(model: nn.Module, call: SynthesisCall) -> contextvars.Token:
    calls = dict(CALLS.get())
    calls[id(model)] = call
    return CALLS.set(types.MappingProxyType(calls))
