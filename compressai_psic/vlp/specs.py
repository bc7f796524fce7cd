r"""VLPs from command-line strings: ``--vlp open_clip:ViT-B-32:/path/ViT-B-32.pt``.

:func:`build_vlp` turns spec strings (one per ``--vlp`` flag) into a
:class:`~compressai_psic.vlp.VLPAdapter`, or a
:class:`~compressai_psic.vlp.VLPEnsemble` when several are given;
:func:`split_spec` parses one. The backends are :data:`VLP_BACKENDS`.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

from .adapters import DeviceLike, VLPAdapter, VLPEnsemble
from .open_clip import OpenCLIPAdapter
from .openai import OpenAIClipAdapter
from .tiny import tiny_vlp
from .zoo_vlps import (
    EVAL_VLPS,
    TRAIN_ENSEMBLE,
    load_demo_vlp,
    load_eval_vlp,
    load_zoo_vlp,
)

__all__ = ["VLP_BACKENDS", "build_vlp", "evaluation_only_spec", "split_spec"]

#: Backends understood by :func:`build_vlp`.
VLP_BACKENDS = (
    "open_clip",
    "clip",
    "demo",
    "eval_rn",
    "eval_vit",
    "train_ensemble",
    "zoo",
    "tiny",
)


def split_spec(spec: str) -> Tuple[str, str, str | None]:
    """``(backend, model name, weights)`` of a spec string; missing parts are
    ``""`` and ``None``, ``hf-hub:`` and ``local-dir:`` names are kept whole.

    Raises:
        ValueError: the backend is not one of :data:`VLP_BACKENDS`
    """
    backend, sep, rest = spec.partition(":")
    backend = backend.strip().lower().replace("-", "_")
    if backend == "openclip":
        backend = "open_clip"
    if backend not in VLP_BACKENDS:
        raise ValueError(
            f'Invalid VLP spec "{spec}": the backend must be one of '
            f"{list(VLP_BACKENDS)} (e.g. 'open_clip:ViT-B-32:/path/weights.pt', "
            "'clip:ViT-B/32', 'tiny')"
        )
    if not sep or not rest:
        return backend, "", None
    for schema in ("hf-hub:", "local-dir:"):
        if rest.startswith(schema):
            name, _, weights = rest[len(schema) :].partition(":")
            return backend, schema + name, weights or None
    name, _, weights = rest.partition(":")
    return backend, name, weights or None


def evaluation_only_spec(spec: str) -> bool:
    """Whether a spec names an evaluation VLP (``eval-rn``, ``eval-vit`` or
    ``zoo:eval-vlp-*``), which codecs must never be trained against."""
    backend, name, _ = split_spec(spec)
    if backend in ("eval_rn", "eval_vit"):
        return True
    return backend == "zoo" and name in {n for n, _ in EVAL_VLPS.values()}


def build_vlp(
    spec: Union[str, Sequence[str], VLPAdapter, VLPEnsemble],
    device: DeviceLike = "cpu",
    cache_dir: str | None = None,
    autocast: bool = True,
) -> Union[VLPAdapter, VLPEnsemble]:
    r"""Builds a VLP (or an ensemble, from several specs) from strings.

    Spec strings, one per ``--vlp`` flag:

    - ``open_clip:<model>[:<weights>]``: ``<weights>`` is a file, a directory, a
      pretrained tag or ``random``; e.g. ``open_clip:ViT-B-32:/w/ViT-B-32.pt``,
      ``open_clip:ViT-B-32:openai``, ``open_clip:ViT-B-32:random``;
    - ``clip:<name or file>[:<download_root>]``: OpenAI's ``clip`` package;
    - ``demo[:<weights file>]``: the small CLIP trained on the package's scene
      benchmark and shipped under ``zoo/`` (the demo's attacker);
    - ``eval-rn[:<weights file>]``, ``eval-vit[:<weights file>]``: the
      evaluation VLPs shipped under ``zoo/`` (a ResNet-tower CLIP and a wider,
      shallower ViT CLIP trained on the same benchmark); codecs are measured on
      them, never trained against them;
    - ``train-ensemble``: the training ensemble shipped under ``zoo/``
      (``demo-vlp`` and the ``train-vlp-*`` models: two ViT and two ResNet
      image towers; see ``zoo/TRAIN_VLPS.md``), as one
      :class:`~compressai_psic.vlp.VLPEnsemble`;
    - ``zoo:<manifest name>``: any VLP of the manifest (``kind: vlp``) by
      name, e.g. ``zoo:train-vlp-rn-wide``;
    - ``tiny[:<seed>]``: :func:`~compressai_psic.vlp.tiny.tiny_vlp`, a tiny
      randomly initialised open_clip model (tests, smoke runs and timing
      only: it protects nothing).

    Args:
        spec: a spec string, a list of them (an ensemble when longer than one), or
            an already built VLP (returned as is)
        device: where the models live
        cache_dir: download/cache directory for open_clip tags
        autocast: run under ``torch.autocast`` on CUDA
    """
    if isinstance(spec, (VLPAdapter, VLPEnsemble)):
        return spec
    if not isinstance(spec, str):
        specs = list(spec)
        if not specs:
            raise ValueError("build_vlp needs at least one spec")
        members = [build_vlp(s, device, cache_dir, autocast) for s in specs]
        if len(members) == 1:
            return members[0]
        flat = []
        for member in members:
            flat.extend(member if isinstance(member, VLPEnsemble) else [member])
        return VLPEnsemble(flat)

    backend, name, weights = split_spec(spec)
    if backend == "demo":
        # "demo" or "demo:<weights file>": the small CLIP shipped under zoo/.
        path = ":".join(p for p in (name, weights) if p) or None
        return load_demo_vlp(path, device=device or "cpu", autocast=autocast)
    if backend in ("eval_rn", "eval_vit"):
        path = ":".join(p for p in (name, weights) if p) or None
        return load_eval_vlp(backend, path, device=device or "cpu", autocast=autocast)
    if backend == "train_ensemble":
        return VLPEnsemble(
            [
                load_zoo_vlp(name, device=device or "cpu", autocast=autocast)
                for name in TRAIN_ENSEMBLE
            ]
        )
    if backend == "zoo":
        if not name:
            raise ValueError(
                f'Invalid VLP spec "{spec}": name a VLP of the manifest, '
                "e.g. 'zoo:train-vlp-rn-wide'"
            )
        return load_zoo_vlp(name, device=device or "cpu", autocast=autocast)
    if backend == "tiny":
        seed = int(name) if name else 0
        vlp = tiny_vlp(seed=seed, autocast=autocast)
        return vlp.to(device) if device is not None else vlp
    if not name:
        raise ValueError(f'Invalid VLP spec "{spec}": the model name is missing')
    if backend == "open_clip":
        return OpenCLIPAdapter(
            name,
            pretrained=weights,
            cache_dir=cache_dir,
            device=device,
            autocast=autocast,
        )
    return OpenAIClipAdapter(
        name, download_root=weights, device=device, autocast=autocast
    )
