r"""compressai_psic: privacy-shielded decoding for CompressAI image models.

One bitstream decodes by default to a **protected** image that people find fine
but vision-language models cannot interpret, and, given the unlock condition, to
the **full** image, for every CompressAI image architecture. This implements
`"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_ (PSIC),
ICML 2025.

The package imports lazily, so that ``psic --help`` and ``psic info`` start
without torch: the names below load the core (``compressai_psic.models``) and the
losses on first use. Registration in ``compressai.registry`` has one route:
importing ``compressai_psic.models`` registers the shielded models
(``psic-<name>``), importing ``compressai_psic.losses`` the criteria (``psic``,
``psic-rd``, ``psic-uaeo``); :func:`register` imports both, and so does the
first use of a name below. ``import compressai_psic`` alone registers nothing
and imports neither torch nor CompressAI, whatever was imported before.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, List

__version__ = "0.3.0"

#: Public name → module that defines it.
_EXPORTS = {
    **{
        name: "compressai_psic.models"
        for name in (
            "ARCHITECTURES",
            "Architecture",
            "CONDITION_NAMES",
            "ConditionEncoder",
            "FourierConditionEncoder",
            "InjectionPoint",
            "PSICHyperprior",
            "SHIELDED_CLASSES",
            "ShieldedMixin",
            "TriggerProjection",
            "ZOO_ARCHITECTURES",
            "get_architecture",
            "guess_architecture",
            "load_checkpoint",
            "register_architecture",
            "shield",
            "shielded_class",
            "unshield",
        )
    },
    **{
        name: "compressai_psic.losses"
        for name in ("DualPathRateDistortionLoss", "PSICLoss", "UAEOLoss")
    },
    "crop_padding": "compressai_psic.padding",
    "pad_to_multiple": "compressai_psic.padding",
}

__all__ = sorted(_EXPORTS) + ["register"]


def _silence_third_party_warnings() -> None:
    # CompressAI imports torch_geometric, whose torch.jit.script calls warn on
    # every start with torch >= 2.9; the warning is not about this package's code.
    warnings.filterwarnings(
        "ignore", message=r".*torch\.jit\.script.*", category=FutureWarning
    )


def register() -> None:
    """Loads the core and the losses, registering them in ``compressai.registry``."""
    _silence_third_party_warnings()
    importlib.import_module("compressai_psic.models")
    importlib.import_module("compressai_psic.losses")


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name in ("zoo",):
            return importlib.import_module(f"compressai_psic.{name}")
        raise AttributeError(f"module 'compressai_psic' has no attribute {name!r}")
    register()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))


_silence_third_party_warnings()
