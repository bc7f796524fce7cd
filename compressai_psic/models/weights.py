r"""How a shielded model reads and writes its weights.

The plan is part of the weights: each projection is stored under the name of
its injection point (``trigger_proj.g_s-4.weight``), so a state dict says where
the triggers go and how wide they are; an affine projection (a scale as well as a
shift, twice the channels) also stores ``{"modulation": "affine"}`` as its
``_extra_state``, so the weights say how they act. External layouts (the
official PSIC checkpoints) are renamed on the way in and out.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from torch import Tensor

from ..state_dicts import normalize_state_dict
from .keyed import KeyedLatentShift
from .registry import InjectionPoint, build_probe, infer_channels, rename_prefixes

__all__ = ["ShieldedWeightsMixin"]


class ShieldedWeightsMixin:
    """``load_state_dict``, ``state_dict`` and ``from_state_dict`` of
    :class:`~compressai_psic.models.ShieldedMixin`."""

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        state_dict = normalize_state_dict(state_dict, self)
        state_dict = self._psic_architecture.to_internal(state_dict)
        rows = _projection_rows(state_dict)
        ours = sorted(p.target for p in self._psic_points)
        given = sorted(rows)
        if given and given != ours and not self._psic_architecture.trigger_argument:
            raise ValueError(
                f"The weights carry triggers at {given}, this model at {ours} (plan "
                f'"{self.plan}"); build the model from the weights with '
                "from_state_dict() or load_checkpoint()"
            )
        written = _written_modulation(state_dict)
        if rows and written is not None and written != self.modulation:
            raise ValueError(
                f"The weights' triggers are {written}, this model's "
                f"{self.modulation}; build the model from the weights with "
                "from_state_dict() or load_checkpoint()"
            )
        if rows and written is None and self.modulation == "affine":
            # Written by compressai_psic 0.2.0, before the modulation was recorded:
            # the shapes say affine (twice the rows), which the load checks.
            state_dict = dict(state_dict)
            for point in self._psic_points:
                state_dict[f"trigger_proj.{point.key}._extra_state"] = {
                    "modulation": "affine"
                }
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
        given = state_dict  # load_state_dict normalizes it knowing the model
        state_dict = normalize_state_dict(state_dict)
        arch = cls._psic_architecture
        internal = arch.to_internal(state_dict)
        config = dict(arch.config(internal))
        fc1 = internal.get("global_cond.beta_mlp.fc1.weight")
        # Unused when a condition_encoder of the caller's replaces the written one.
        if fc1 is not None:
            config.setdefault("trigger_dim", int(fc1.size(0)))
            config.setdefault("num_frequencies", (int(fc1.size(1)) - 1) // 2)
        rows = _projection_rows(internal)
        if rows and "modulation" not in kwargs:
            modulation = _written_modulation(internal)
            if modulation is None:  # files of compressai_psic 0.2.0
                modulation = _modulation_from_shapes(cls, config, rows)
            config["modulation"] = modulation
        # A plan asked for picks the points; injection_points given in kwargs
        # replace these anyway (config.update below).
        if rows and "plan" not in kwargs:
            halve = config.get("modulation", kwargs.get("modulation")) == "affine"
            config["injection_points"] = [
                InjectionPoint(t, n // 2 if halve else n) for t, n in rows.items()
            ]
        if "key_shift.net.0.weight" in internal:  # a keyed model
            shift = KeyedLatentShift.config_from_state_dict(internal, "key_shift.")
            config["key_noise_channels"] = shift["noise_channels"]
            config["key_hidden"] = shift["hidden"]
            config["key_form"] = shift["form"]
        config.update(kwargs)
        net = cls(**config)
        net.load_state_dict(given)
        return net


def _projection_rows(state_dict: Mapping[str, Tensor]) -> Dict[str, int]:
    """Rows of every trigger projection, by injection point."""
    return {
        InjectionPoint.target_of(k[len("trigger_proj.") : -len(".weight")]): int(
            v.size(0)
        )
        for k, v in state_dict.items()
        if k.startswith("trigger_proj.") and k.endswith(".weight")
    }


def _written_modulation(state_dict: Mapping[str, Any]) -> Optional[str]:
    """The modulation the weights record: ``"affine"`` when their projections
    carry its extra state, else ``None``: bias projections carry none, and
    neither do affine files of compressai_psic 0.2.0, so the shapes decide."""
    marks = [
        v
        for k, v in state_dict.items()
        if k.startswith("trigger_proj.") and k.endswith("._extra_state")
    ]
    if marks:
        return "affine"
    return None


def _modulation_from_shapes(
    cls: type, config: Mapping[str, Any], rows: Mapping[str, int]
) -> str:
    """``"affine"`` when every projection has twice its point's channels.

    Only for files without the recorded modulation: a bias projection has as
    many rows as channels. The channels are read off a model built on the meta
    device where the constructor allows it (no weights allocated).
    """
    if any(n % 2 for n in rows.values()):
        return "bias"
    points = [InjectionPoint(t, n) for t, n in rows.items()]
    probe = build_probe(cls, dict(config, injection_points=points))
    channels = {t: infer_channels(probe.get_submodule(t)) for t in rows}
    if all(channels[t] is not None and channels[t] * 2 == rows[t] for t in rows):
        return "affine"
    return "bias"
