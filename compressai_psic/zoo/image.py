r"""The entry points of the shielded zoo, as ``compressai.zoo``'s.

.. code-block:: python

    from compressai_psic.zoo import bmshj2018_hyperprior

    net = bmshj2018_hyperprior(quality=3, metric="mse", pretrained=False)

``pretrained=True`` loads the base CompressAI weights through ``compressai.zoo``
(they download into torch hub's cache), then the PSIC trigger and synthesis
weights that the manifest lists for the zoo point
(:mod:`compressai_psic.zoo.manifest`). :func:`load_named` loads a named codec
of the manifest (e.g. ``demo-psic``). torch and CompressAI are imported when a
model is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from .manifest import (
    NoPublishedWeightsError,
    cache_dir,
    codec_names,
    manifest_entry,
    manifest_path,
    weights_file,
)

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "MAX_QUALITY",
    "METRICS",
    "bmshj2018_factorized",
    "bmshj2018_hyperprior",
    "build_zoo_model",
    "cheng2020_anchor",
    "cheng2020_attn",
    "image_models",
    "load_named",
    "mbt2018",
    "mbt2018_mean",
]

METRICS = ("mse", "ms-ssim")
#: CompressAI's zoo names and the class each entry builds.
_BASE_CLASSES = {
    "bmshj2018-factorized": "FactorizedPrior",
    "bmshj2018-hyperprior": "ScaleHyperprior",
    "mbt2018-mean": "MeanScaleHyperprior",
    "mbt2018": "JointAutoregressiveHierarchicalPriors",
    "cheng2020-anchor": "Cheng2020Anchor",
    "cheng2020-attn": "Cheng2020Attention",
}
MAX_QUALITY = {
    name: (6 if name.startswith("cheng2020") else 8) for name in _BASE_CLASSES
}


def _base_pretrained(architecture: str, metric: str, quality: int, progress: bool):
    import compressai.zoo as cai_zoo
    from compressai.zoo.image import model_urls

    try:
        return cai_zoo.image_models[architecture](
            quality, metric=metric, pretrained=True, progress=progress
        )
    except Exception as err:
        url = model_urls.get(architecture, {}).get(metric, {}).get(quality)
        hub = Path(os.environ.get("TORCH_HOME", "~/.cache/torch")).expanduser()
        name = url.rsplit("/", 1)[-1] if url else "<file>"
        raise RuntimeError(
            f"Could not load CompressAI's pretrained {architecture} "
            f"(quality={quality}, metric={metric}): {err}. Download {url} and put it "
            f"at {hub / 'hub' / 'checkpoints' / name}"
        ) from err


def _load_entry_weights(model: nn.Module, weights: Path, entry: Dict[str, Any]):
    from ..state_dicts import load_torch_file

    state = load_torch_file(weights)
    result = model.load_state_dict(state, strict=bool(entry.get("includes_base")))
    if not entry.get("includes_base"):
        groups = model.parameter_groups()
        trigger_keys = set(groups["trigger_encoder"] + groups["trigger_projections"])
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if k in trigger_keys]
        if unexpected or missing:
            raise RuntimeError(
                f"PSIC weights {entry.get('file')} do not fit {model.architecture}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    return model


def _load_model(
    architecture: str,
    metric: str,
    quality: int,
    pretrained: bool = False,
    progress: bool = True,
    **kwargs: Any,
) -> nn.Module:
    if metric not in METRICS:
        raise ValueError(f'Invalid metric "{metric}", choose from {METRICS}')
    top = MAX_QUALITY[architecture]
    if not isinstance(quality, int) or quality < 1 or quality > top:
        raise ValueError(f'Invalid quality "{quality}", should be between (1, {top})')
    from ..models import SHIELDED_CLASSES

    cls = SHIELDED_CLASSES[architecture]
    if not pretrained:
        from compressai.zoo.image import cfgs

        names = ("N",) if architecture.startswith("cheng2020") else ("N", "M")
        config = dict(zip(names, cfgs[architecture][quality]))
        config.update(kwargs)
        return cls(**config)
    entry = manifest_entry(architecture, metric, quality)
    if entry is None:
        raise NoPublishedWeightsError(
            f"No PSIC weights are published for {architecture} (quality={quality}, "
            f"metric={metric}) in {manifest_path()}. Train them with "
            f"`python -m compressai_psic.train --model {architecture}` (see README) "
            "and load the result with compressai_psic.load_checkpoint, or add a "
            "manifest entry "
            f"(file, sha256) and put the file in {cache_dir()}"
        )
    # The PSIC file first: it is small, and a missing one should not cost a
    # download of CompressAI's weights before failing.
    from ..models import shield
    from ..state_dicts import load_torch_file

    weights = weights_file(entry, progress)
    if entry.get("includes_base"):
        model = cls.from_state_dict(load_torch_file(weights))
    else:
        model = shield(_base_pretrained(architecture, metric, quality, progress))
        _load_entry_weights(model, weights, entry)
    return model.eval()


def load_named(name: str, progress: bool = True) -> nn.Module:
    """Loads a named manifest model (e.g. the demo model) with its sha256 check."""
    from ..models import SHIELDED_CLASSES
    from ..state_dicts import load_torch_file

    entry = manifest_entry(name=name)
    codecs = codec_names()
    if entry is None:
        raise ValueError(f'Unknown model "{name}"; the manifest has codecs {codecs}')
    if entry.get("architecture") not in SHIELDED_CLASSES:
        raise ValueError(
            f'Manifest entry "{name}" is not a shielded codec (kind '
            f"{entry.get('kind', 'unknown')!r}); codecs: {codecs}"
        )
    cls = SHIELDED_CLASSES[entry["architecture"]]
    state = load_torch_file(weights_file(entry, progress))
    return cls.from_state_dict(state).eval()


def _make_entry(architecture: str) -> Callable[..., nn.Module]:
    top = MAX_QUALITY[architecture]

    def entry(
        quality: int,
        metric: str = "mse",
        pretrained: bool = False,
        progress: bool = True,
        **kwargs: Any,
    ) -> nn.Module:
        return _load_model(
            architecture, metric, quality, pretrained, progress, **kwargs
        )

    entry.__name__ = architecture.replace("-", "_")
    entry.__qualname__ = entry.__name__
    entry.__doc__ = (
        f"Shielded ``{architecture}`` (CompressAI's "
        f"``{_BASE_CLASSES[architecture]}`` with PSIC triggers).\n\n"
        "Args:\n"
        f"    quality (int): quality level (1: lowest, highest: {top})\n"
        "    metric (str): optimized metric, choose from ('mse', 'ms-ssim')\n"
        "    pretrained (bool): load CompressAI's weights and the PSIC weights of the\n"
        "        manifest (sha256-checked)\n"
        "    progress (bool): show download progress bars\n"
        "    **kwargs: constructor overrides (``N``, ``M``, ``trigger_dim``, ...)\n"
    )
    return entry


bmshj2018_factorized = _make_entry("bmshj2018-factorized")
bmshj2018_hyperprior = _make_entry("bmshj2018-hyperprior")
mbt2018_mean = _make_entry("mbt2018-mean")
mbt2018 = _make_entry("mbt2018")
cheng2020_anchor = _make_entry("cheng2020-anchor")
cheng2020_attn = _make_entry("cheng2020-attn")

#: Zoo name → entry function, as ``compressai.zoo.image_models``.
image_models: Dict[str, Callable[..., nn.Module]] = {
    "bmshj2018-factorized": bmshj2018_factorized,
    "bmshj2018-hyperprior": bmshj2018_hyperprior,
    "mbt2018-mean": mbt2018_mean,
    "mbt2018": mbt2018,
    "cheng2020-anchor": cheng2020_anchor,
    "cheng2020-attn": cheng2020_attn,
}


def build_zoo_model(
    architecture: str,
    quality: int,
    metric: str = "mse",
    seed: Optional[int] = None,
    progress: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """The zoo model ``architecture`` at ``quality``: with its published weights,
    or, given a ``seed``, with random weights drawn in a forked RNG.

    Random weights depend only on the seed (and the PyTorch and CompressAI
    versions), not on the caller's random state, which is left untouched: they
    are the weights ``psic compress --random-init --seed SEED`` writes files with
    and ``psic decompress`` rebuilds. ``kwargs`` go to the entry point (``N``,
    ``M``, ``plan`` …).
    """
    entry = image_models[architecture]
    if seed is None:
        return entry(
            quality, metric=metric, pretrained=True, progress=progress, **kwargs
        )
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return entry(quality, metric=metric, pretrained=False, **kwargs)
