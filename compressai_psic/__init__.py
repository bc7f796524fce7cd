r"""compressai_psic: privacy-shielded decoding for CompressAI image models.

One bitstream decodes by default to a **protected** image that people find fine
but vision-language models cannot interpret, and, given the unlock condition, to
the **full** image, for every CompressAI image architecture. This implements
`"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_ (PSIC),
ICML 2025.

The package imports lazily, so that ``psic --help`` and ``psic info`` start
without torch: the names below load the core (``compressai_psic.models``) and the
losses on first use. The shielded models (``psic-<name>``) and the criteria
(``psic``, ``psic-rd``, ``psic-uaeo``) are in ``compressai.registry`` whenever a
program can see it: at ``import compressai_psic`` when CompressAI is already
imported, else right after CompressAI's own import finishes (an import hook),
else at the first use of a name below; :func:`register` does it explicitly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, List

__version__ = "0.2.0"

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
    "crop_padding": "compressai_psic.utils",
    "pad_to_multiple": "compressai_psic.utils",
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


def _importing_this_package() -> bool:
    """Whether a module of this package is being imported right now."""
    for name, module in list(sys.modules.items()):
        if name.startswith(__name__ + ".") and module is not None:
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return True
    return False


class _RegisterAfterCompressAI(importlib.abc.MetaPathFinder):
    """Registers this package in ``compressai.registry`` once ``compressai`` has
    finished importing, so a program that imports this package first and
    CompressAI later finds ``MODELS["psic-…"]`` and ``CRITERIONS["psic…"]``
    without paying for torch in ``psic --help``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "compressai":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            # Inside an import of this package's own modules the core is not
            # complete yet: it registers its models itself when it finishes.
            if not _importing_this_package():
                register()

        loader.exec_module = exec_module
        return spec


_silence_third_party_warnings()
if "compressai" in sys.modules:
    register()
elif not any(isinstance(f, _RegisterAfterCompressAI) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterCompressAI())
