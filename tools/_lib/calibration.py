r"""Random-weight models whose latents look like a trained model's.

A zoo model with random weights codes an image as (almost) all-zero symbols
with the smallest scale: nothing for a test or a benchmark of the entropy path
to see (a drifting scale changes no table, no symbol). :func:`calibrate`
rescales the last layer of the analysis, of the hyper-analysis and of whatever
produces the entropy parameters so that, on a given image, ``y`` has a standard
deviation of 4, ``z`` of 2, and the entropy parameters one of 1.5 (their scales
then spread over CompressAI's scale table).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["calibrate"]


def _rescale(module: nn.Module, factor: float) -> None:
    layers = [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    with torch.no_grad():
        layers[-1].weight.mul_(factor)
        if layers[-1].bias is not None:
            layers[-1].bias.mul_(factor)


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Rescales ``model`` in place for the image ``x`` (see the module
    docstring), updates its CDF tables and returns it."""
    x = x.to(next(model.parameters()).device)
    with torch.no_grad():
        _rescale(model.g_a, 4 / float(model.g_a(x).std()))
        y = model.g_a(x)
        if hasattr(model, "h_a"):
            # bmshj2018-hyperprior's hyper-analysis sees |y|.
            h_a_input = y.abs() if _abs_prior(model) else y
            _rescale(model.h_a, 2 / float(model.h_a(h_a_input).std()))
            z_hat = model.entropy_bottleneck(model.h_a(h_a_input))[0]
            params = model.h_s(z_hat)
            if hasattr(model, "entropy_parameters"):
                context = model.context_prediction(y.round())
                params = model.entropy_parameters(torch.cat((params, context), 1))
                _rescale(model.entropy_parameters, 1.5 / float(params.std()))
            else:
                _rescale(model.h_s, 1.5 / float(params.std()))
    model.update(force=True)
    return model


def _abs_prior(model: nn.Module) -> bool:
    """Whether the hyper-analysis takes ``|y|`` (CompressAI's ScaleHyperprior
    and its subclasses that keep its ``forward``, not the mean-scale models)."""
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    return isinstance(model, ScaleHyperprior) and not isinstance(
        model, MeanScaleHyperprior
    )
