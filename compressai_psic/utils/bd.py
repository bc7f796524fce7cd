r"""Bjøntegaard deltas (BD-rate, BD-PSNR) of rate–distortion curves.

The computation is the maintained ``bjontegaard`` package's (FAU-LMS,
``pip install bjontegaard``, in the ``[eval]`` extra); this module picks its
curves out of ``eval_model`` results and names the comparisons PSIC reports:

- the **protected** path against the **full** one: what the protection costs in
  rate at equal quality (the same bitstream, so any difference is distortion);
- the **full** path against the **base** CompressAI model: what shielding costs
  the ordinary decode (zero for an upgraded zoo model, whose full path is the
  base synthesis).

BD-rate is the average rate difference in percent at equal quality (negative:
the test curve needs fewer bits); BD-PSNR the average quality difference in dB
at equal rate. Both need two or more rate points per curve.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Mapping

from .results import curve

__all__ = ["BD_METHODS", "bd_metrics", "import_bjontegaard"]

#: Interpolation methods of the ``bjontegaard`` package; ``akima`` is the
#: default (it needs no more than two points, unlike ``cubic``).
BD_METHODS = ("akima", "pchip", "cubic")

_MIN_POINTS = {"akima": 2, "pchip": 2, "cubic": 4}


def import_bjontegaard() -> Any:
    """The ``bjontegaard`` module, or an ``ImportError`` naming the extra."""
    try:
        import bjontegaard
    except ImportError:
        raise ImportError(
            "BD-rates need the bjontegaard package: pip install "
            "'compressai-psic[eval]' (or pip install bjontegaard)"
        ) from None
    return bjontegaard


def bd_metrics(
    anchor: Mapping[str, Any],
    test: Mapping[str, Any],
    metric: str = "psnr-rgb",
    method: str = "akima",
) -> Dict[str, Any]:
    """BD-rate (%) and BD-<metric> of ``test`` against ``anchor``.

    Args:
        anchor, test: ``eval_model`` results (``{"name", "results": {...}}``)
        metric: the quality key of ``results`` (``psnr-rgb`` or ``ms-ssim-rgb``;
            MS-SSIM is taken in dB, ``-10 log10(1 - MS-SSIM)``, as CompressAI's
            plot shows it)
        method: interpolation, one of :data:`BD_METHODS`

    Returns:
        ``{"anchor", "test", "metric", "method", "bd_rate", "bd_metric",
        "points"}``; ``bd_rate`` and ``bd_metric`` are ``None`` when the curves
        have too few points or do not overlap
    """
    if method not in BD_METHODS:
        raise ValueError(
            f"Invalid BD method {method!r}: use one of {', '.join(BD_METHODS)}"
        )
    bjontegaard = import_bjontegaard()
    rates_a, values_a = curve(anchor, metric)
    rates_t, values_t = curve(test, metric)
    if metric == "ms-ssim-rgb":
        values_a = [_db(v) for v in values_a]
        values_t = [_db(v) for v in values_t]
    out: Dict[str, Any] = {
        "anchor": anchor.get("name"),
        "test": test.get("name"),
        "metric": metric,
        "method": method,
        "bd_rate": None,
        "bd_metric": None,
        "points": [len(rates_a), len(rates_t)],
    }
    need = _MIN_POINTS[method]
    if min(len(rates_a), len(rates_t)) < need:
        out["note"] = f"{method} needs at least {need} rate points per curve"
        return out
    if len(set(values_a)) < len(values_a) or len(set(values_t)) < len(values_t):
        out["note"] = "a curve has equal quality at two rates"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = dict(method=method, require_matching_points=False, min_overlap=0)
        try:
            rate = bjontegaard.bd_rate(rates_a, values_a, rates_t, values_t, **kwargs)
            quality = bjontegaard.bd_psnr(
                rates_a, values_a, rates_t, values_t, **kwargs
            )
        except ValueError as err:  # e.g. quality not increasing with rate
            out["note"] = f"not computable: {' '.join(str(err).split())}"
            return out
    out["bd_rate"] = float(rate) if math.isfinite(rate) else None
    out["bd_metric"] = float(quality) if math.isfinite(quality) else None
    if out["bd_rate"] is None:
        out["note"] = "the curves do not overlap"
    return out


def _db(value: float) -> float:
    return -10.0 * math.log10(1.0 - value) if value < 1.0 else math.inf
