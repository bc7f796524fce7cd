r"""The core: shielded model classes, conditions, injection plans and registry.

Importing this package registers CompressAI's six image zoo architectures and the
official PSIC layout (``psic-hy2018``). It imports nothing from training,
evaluation, the command line or the demo.
"""

from .checkpoints import guess_architecture, load_checkpoint
from .conditions import (
    CONDITION_NAMES,
    Condition,
    ConditionEncoder,
    FourierConditionEncoder,
    FourierFeatures,
)
from .google import (
    GDN_PLANS,
    ShieldedFactorizedPrior,
    ShieldedJointAutoregressiveHierarchicalPriors,
    ShieldedMeanScaleHyperprior,
    ShieldedScaleHyperprior,
)
from .psic import PSICHyperprior, PSICHyperpriorBase
from .registration import register_architecture
from .registry import (
    ARCHITECTURES,
    Architecture,
    CheckpointLayout,
    InjectionPoint,
    get_architecture,
)
from .shielded import ShieldedMixin, TriggerProjection
from .synthesis import ShieldedSynthesis, register_block_runner
from .upgrade import shield, shielded_class, unshield
from .waseda import CHENG_PLANS, ShieldedCheng2020Anchor, ShieldedCheng2020Attention

#: The CompressAI zoo names, in CompressAI's order.
ZOO_ARCHITECTURES = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)

#: Shielded class of every built-in architecture, by registry name.
SHIELDED_CLASSES = {
    name: ARCHITECTURES[name].shielded_class
    for name in ZOO_ARCHITECTURES + ("psic-hy2018",)
}

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CHENG_PLANS",
    "CONDITION_NAMES",
    "CheckpointLayout",
    "Condition",
    "ConditionEncoder",
    "FourierConditionEncoder",
    "FourierFeatures",
    "GDN_PLANS",
    "InjectionPoint",
    "PSICHyperprior",
    "PSICHyperpriorBase",
    "SHIELDED_CLASSES",
    "ShieldedCheng2020Anchor",
    "ShieldedCheng2020Attention",
    "ShieldedFactorizedPrior",
    "ShieldedJointAutoregressiveHierarchicalPriors",
    "ShieldedMeanScaleHyperprior",
    "ShieldedMixin",
    "ShieldedScaleHyperprior",
    "ShieldedSynthesis",
    "TriggerProjection",
    "ZOO_ARCHITECTURES",
    "get_architecture",
    "guess_architecture",
    "load_checkpoint",
    "register_architecture",
    "register_block_runner",
    "shield",
    "shielded_class",
    "unshield",
]
