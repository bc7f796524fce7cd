r"""Shielded Ballé/Minnen models: bmshj2018-factorized, bmshj2018-hyperprior,
mbt2018-mean and mbt2018.

Their synthesis is ``deconv, IGDN`` three times, then a last ``deconv`` to RGB:

.. code-block:: none

    y_hat (1/16) ─► deconv ─► IGDN ─► deconv ─► IGDN ─► deconv ─► IGDN ─► deconv ─► x
                    g_s.0     g_s.1   g_s.2     g_s.3   g_s.4     g_s.5   g_s.6
                      1/8 resolution    1/4 resolution    1/2 resolution

Plans:

- ``every-stage`` (default): a bias after each transposed convolution (acting
  through the inverse GDN, a nonlinearity) and after each inverse GDN, at every
  resolution: six bias vectors, like the paper's two per stage. A bias on the
  latent itself would pass through the linear ``g_s.0`` and equal a bias on its
  output (up to the border), so ``g_s.0`` stands for the latent-resolution stage.
- ``late``: ``g_s.4`` and ``g_s.5`` only (½ resolution). Both-path decoding
  runs everything before them once and costs little more than one decode, but a
  bias that late can only add a nearly fixed pattern to every image.
"""

from __future__ import annotations

from compressai.models import (
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)

from .autoregressive import BoundedAutoregressiveDecoding
from .registration import register_architecture
from .shielded import ShieldedMixin

__all__ = [
    "GDN_PLANS",
    "ShieldedFactorizedPrior",
    "ShieldedJointAutoregressiveHierarchicalPriors",
    "ShieldedMeanScaleHyperprior",
    "ShieldedScaleHyperprior",
]

#: Injection plans of the GDN synthesis transforms.
GDN_PLANS = {
    "every-stage": ("g_s.0", "g_s.1", "g_s.2", "g_s.3", "g_s.4", "g_s.5"),
    "late": ("g_s.4", "g_s.5"),
}


@register_architecture("bmshj2018-factorized", plans=GDN_PLANS)
class ShieldedFactorizedPrior(ShieldedMixin, FactorizedPrior):
    """:class:`~compressai.models.FactorizedPrior` with shielded decoding."""


@register_architecture("bmshj2018-hyperprior", plans=GDN_PLANS)
class ShieldedScaleHyperprior(ShieldedMixin, ScaleHyperprior):
    """:class:`~compressai.models.ScaleHyperprior` with shielded decoding."""


@register_architecture("mbt2018-mean", plans=GDN_PLANS)
class ShieldedMeanScaleHyperprior(ShieldedMixin, MeanScaleHyperprior):
    """:class:`~compressai.models.MeanScaleHyperprior` with shielded decoding."""


@register_architecture("mbt2018", plans=GDN_PLANS)
class ShieldedJointAutoregressiveHierarchicalPriors(
    ShieldedMixin, BoundedAutoregressiveDecoding, JointAutoregressiveHierarchicalPriors
):
    """:class:`~compressai.models.JointAutoregressiveHierarchicalPriors` with
    shielded decoding; ``y`` is decoded in bounds
    (:class:`~compressai_psic.models.autoregressive.BoundedAutoregressiveDecoding`).
    """
