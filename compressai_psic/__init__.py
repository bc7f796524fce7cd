r"""compressai_psic: privacy-shielded decoding for CompressAI image models.

One bitstream decodes by default to a **protected** image that people find fine
but vision-language models cannot interpret, and, given the unlock condition, to
the **full** image. Implements `"Privacy-Shielded Image Compression: Defending
Against Exploitation from Vision-Language Pretrained Models"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025, for every CompressAI image
architecture.
"""

import warnings

# CompressAI imports torch_geometric, whose torch.jit.script calls warn on every
# start with torch >= 2.9; the warning is not about this package's code.
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.*", category=FutureWarning
)

from .architectures import SHIELDED_CLASSES, ZOO_ARCHITECTURES, PSICHyperprior
from .checkpoints import load_checkpoint
from .conditions import CONDITION_NAMES, ConditionEncoder, FourierConditionEncoder
from .models import ShieldedMixin, TriggerProjection, shield, shielded_class
from .registry import (
    ARCHITECTURES,
    Architecture,
    InjectionPoint,
    get_architecture,
    register_architecture,
)
from .utils import crop_padding, pad_to_multiple

__version__ = "0.1.0"

__all__ = [
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
    "crop_padding",
    "get_architecture",
    "load_checkpoint",
    "pad_to_multiple",
    "register_architecture",
    "shield",
    "shielded_class",
]
