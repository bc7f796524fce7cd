r"""Helpers and CompressAI-style command-line tools for shielded models.

Like :mod:`compressai.utils`, this package holds the tools users run on their
models, for both decode paths::

    python -m compressai_psic.utils.eval_model checkpoint kodak/ -p ckpt.pth.tar
    python -m compressai_psic.utils.eval_model pretrained kodak/ -a mbt2018 -q 1,2,3
    python -m compressai_psic.utils.update_model ckpt.pth.tar -n psic-hyperprior-q3
    python -m compressai_psic.utils.plot out/*.json -o rd.png
    python -m compressai_psic.utils.plot pareto sweep/*.json -o pareto.png

- :mod:`~compressai_psic.utils.eval_model`: rate–distortion of each path on a
  folder of images (Kodak, CLIC, …) in ``compressai.utils.eval_model``'s JSON,
  and BD-rates (protected against full, full against the base model);
- :mod:`~compressai_psic.utils.update_model`: a reproducible
  ``<name>-<sha256[:8]>.pth.tar`` and its manifest entry;
- :mod:`~compressai_psic.utils.plot`: RD curves (with BD-rates) and the privacy
  Pareto plot (:mod:`~compressai_psic.utils.pareto`);
- :mod:`~compressai_psic.utils.bd`: Bjøntegaard deltas from the ``bjontegaard``
  package;
- :mod:`~compressai_psic.utils.results`: reading and writing result JSON.

The helpers below the core (:func:`pad_to_multiple`, :func:`load_torch_file`,
…) live in :mod:`compressai_psic.padding`, :mod:`compressai_psic.state_dicts` and
:mod:`compressai_psic.system`, under every layer that uses them; they are
re-exported here as CompressAI users look for them, on first use, so that the
tools' ``--help`` starts without torch.
"""

from __future__ import annotations

from typing import Any, List

__all__ = [
    "crop_padding",
    "load_torch_file",
    "machine_description",
    "normalize_state_dict",
    "pad_to_multiple",
    "peak_rss_mib",
    "rss_mib",
]


#: Where each re-exported helper lives.
_HELPERS = {
    "crop_padding": "padding",
    "pad_to_multiple": "padding",
    "load_torch_file": "state_dicts",
    "normalize_state_dict": "state_dicts",
    "machine_description": "system",
    "peak_rss_mib": "system",
    "rss_mib": "system",
}


def __getattr__(name: str) -> Any:
    if name not in _HELPERS:
        raise AttributeError(
            f"module 'compressai_psic.utils' has no attribute {name!r}"
        )
    from importlib import import_module

    module = import_module(f"compressai_psic.{_HELPERS[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
