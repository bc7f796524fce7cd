r"""How a shielded model reads and writes its weights.

The plan is part of the weights: each projection is stored under the name of
its injection point (``trigger_proj.g_s-4.weight``), so a state dict says where
the triggers go, how wide they are, and whether they scale as well as shift
(twice the channels). External layouts (the official PSIC checkpoints) are
renamed on the way in and out.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from ..utils import normalize_state_dict
from .registry import InjectionPoint, infer_channels, rename_prefixes

__all__ = ["ShieldedWeightsMixin"]


class ShieldedWeightsMixin:
    """``load_state_dict``, ``state_dict`` and ``from_state_dict`` of
    :class:`~compressai_psic.models.ShieldedMixin`."""

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        state_dict = normalize_state_dict(state_dict, self)
        state_dict = self._psic_architecture.to_internal(state_dict)
        given = sorted(
            InjectionPoint.target_of(k[len("trigger_proj.") : -len(".weight")])
            for k in state_dict
            if k.startswith("trigger_proj.") and k.endswith(".weight")
        )
        ours = sorted(p.target for p in self._psic_points)
        if given and given != ours and not self._psic_architecture.trigger_argument:
            raise ValueError(
                f"The weights carry triggers at {given}, this model at {ours} (plan "
                f'"{self.plan}"); build the model from the weights with '
                "from_state_dict() or load_checkpoint()"
            )
        return super().load_state_dict(state_dict, strict=strict)

    def state_dict(self, *args: Any, **kwargs: Any):
        state = super().state_dict(*args, **kwargs)
        aliases = self._psic_architecture.key_aliases
        if aliases:
            prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
            renamed = rename_prefixes(
                state, {prefix + k: prefix + v for k, v in aliases.items()}
            )
            state.clear()
            state.update(renamed)
        return state

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Tensor], **kwargs: Any):
        """Builds the model from a state dict (or a ``{"state_dict": …}`` checkpoint).

        Channel counts, trigger width, Fourier frequencies and the injection plan
        are read from the weights (the projection names are their injection
        points); ``module.`` prefixes and CompressAI 1.2.6 entropy-bottleneck
        names are accepted.
        """
        state_dict = normalize_state_dict(state_dict)
        arch = cls._psic_architecture
        internal = arch.to_internal(state_dict)
        config = dict(arch.config(internal))
        fc1 = internal.get("global_cond.beta_mlp.fc1.weight")
        if fc1 is not None and "condition_encoder" not in kwargs:
            config.setdefault("trigger_dim", int(fc1.size(0)))
            config.setdefault("num_frequencies", (int(fc1.size(1)) - 1) // 2)
        rows = {
            InjectionPoint.target_of(k[len("trigger_proj.") : -len(".weight")]): int(
                v.size(0)
            )
            for k, v in internal.items()
            if k.startswith("trigger_proj.") and k.endswith(".weight")
        }
        explicit = "plan" in kwargs or "injection_points" in kwargs
        if rows and not explicit:
            config["injection_points"] = [InjectionPoint(t, n) for t, n in rows.items()]
        config.update(kwargs)
        net = cls(**config)
        if rows and not explicit and "modulation" not in kwargs:
            inferred = {t: infer_channels(net.get_submodule(t)) for t in rows}
            # Twice the channels per projection: a scale and a bias per channel.
            if any(inferred.values()) and all(
                rows[t] % 2 == 0 and inferred[t] in (None, rows[t] // 2) for t in rows
            ):
                config["injection_points"] = [
                    InjectionPoint(t, n // 2) for t, n in rows.items()
                ]
                net = cls(**dict(config, modulation="affine"))
        net.load_state_dict(state_dict)
        return net
