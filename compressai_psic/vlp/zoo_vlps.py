r"""The shipped scene CLIPs: the demo VLP and the evaluation VLPs.

PSIC codecs are trained and measured against a frozen vision-language model.
Pretrained CLIP weights cannot be downloaded everywhere, and they are far too
slow for a one-minute CPU demonstration, so the package ships small CLIPs
trained from scratch on the procedural scene benchmark
(:mod:`compressai_psic.datasets.scenes`): open_clip's own
:class:`open_clip.CLIP` with small configurations. They read scenes they never
saw (the test split) well enough to retrieve their captions, which is what a
codec's protected decode must prevent.

The architectures are data: JSON files read by :mod:`compressai_psic.vlp.configs`
(:data:`VLP_ARCHITECTURES`), as open_clip keeps its model configs.

- the *demo VLP* (:data:`DEMO_VLP_CONFIG`, manifest entry ``demo-vlp``): a ViT
  image tower at 64×64 pixels and a three-layer text transformer fed by
  open_clip's BPE tokenizer; codecs are trained against it;
- the *evaluation VLPs* (:data:`EVAL_VLPS`, ``eval-vlp-rn`` and
  ``eval-vlp-vit``): other architecture families (a ResNet image tower, a
  wider and shallower ViT) with their own seeds and image normalisation,
  trained with the held-out test scenes excluded. A codec's protection is
  measured on them, which it never saw.

:func:`build_demo_clip` builds an (untrained) model from a configuration
(:data:`VLP_ARCHITECTURES` names the three shipped ones); :func:`load_demo_vlp`,
:func:`load_eval_vlp` and :func:`load_zoo_vlp` load shipped weights
(sha256-checked against the manifest) as frozen
:class:`~compressai_psic.vlp.VLPAdapter` objects; :func:`demo_state_dict` and
:func:`load_demo_state_dict` convert between a model and the compact file
format. The training recipe is ``tools/_lib/vlp_training.py`` (not installed).

File format: a dict of tensors (``torch.load(..., weights_only=True)`` reads it).
Captions of the benchmark use fewer than a hundred of the tokenizer's 49,408
tokens, and the rows of the token-embedding table that training never touches
hold their random initialisation only. The file therefore keeps the used rows
(``token_embedding.kept_rows``) and their ids (``token_embedding.kept_ids``);
the other rows load as zeros. Every other entry is the model's state dict.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..state_dicts import load_torch_file
from ..zoo import manifest_entry, manifest_path, weights_file
from .adapters import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from .configs import load_vlp_configs
from .open_clip import OpenCLIPAdapter

__all__ = [
    "DEMO_VLP_CONFIG",
    "DEMO_VLP_NAME",
    "EVAL_RN_CONFIG",
    "EVAL_VIT_CONFIG",
    "EVAL_VLPS",
    "TRAIN_ENSEMBLE",
    "TRAIN_VLPS",
    "VLP_ARCHITECTURES",
    "build_demo_clip",
    "demo_state_dict",
    "load_demo_state_dict",
    "load_demo_vlp",
    "load_eval_vlp",
    "load_zoo_vlp",
    "model_mean_std",
    "wrap_demo_clip",
]

#: Manifest name of the shipped demo VLP.
DEMO_VLP_NAME = "demo-vlp"

#: Named architectures of ``tools/train_demo_vlp.py --arch``: the JSON files of
#: ``compressai_psic/vlp/model_configs/`` (see :mod:`compressai_psic.vlp.configs`),
#: keyword arguments of ``open_clip.CLIP`` plus an optional ``preprocess_cfg``.
VLP_ARCHITECTURES: Dict[str, Dict[str, Any]] = load_vlp_configs()

#: Architecture of the demo VLP (``vit.json``). Captions of the benchmark are at
#: most 40 tokens long with open_clip's tokenizer (start and end tokens included).
DEMO_VLP_CONFIG: Dict[str, Any] = VLP_ARCHITECTURES["vit"]
#: Evaluation VLP with a ResNet image tower (``resnet.json``).
EVAL_RN_CONFIG: Dict[str, Any] = VLP_ARCHITECTURES["resnet"]
#: Evaluation VLP with a wider, shallower ViT (``vit-wide.json``).
EVAL_VIT_CONFIG: Dict[str, Any] = VLP_ARCHITECTURES["vit-wide"]

#: Evaluation VLPs: spec of :func:`~compressai_psic.vlp.build_vlp` → manifest
#: name and architecture. Codecs are not trained against them.
EVAL_VLPS: Dict[str, Tuple[str, str]] = {
    "eval-rn": ("eval-vlp-rn", "resnet"),
    "eval-vit": ("eval-vlp-vit", "vit-wide"),
}

#: The training ensemble: manifest name → architecture. Codecs are trained
#: against these (with ``demo-vlp``), never against :data:`EVAL_VLPS`.
TRAIN_VLPS: Dict[str, str] = {
    "train-vlp-rn-wide": "resnet-wide",
    "train-vlp-rn-deep": "resnet-deep",
    "train-vlp-vit-p8": "vit-p8",
}

#: Members of the ``train-ensemble`` spec: two ViT and two ResNet image towers.
TRAIN_ENSEMBLE: Tuple[str, ...] = (DEMO_VLP_NAME, *TRAIN_VLPS)

_KEPT_IDS = "token_embedding.kept_ids"
_KEPT_ROWS = "token_embedding.kept_rows"
_TOKEN_EMBEDDING = "token_embedding.weight"


def build_demo_clip(
    config: Optional[Dict[str, Any]] = None, seed: Optional[int] = None
) -> nn.Module:
    r"""An untrained ``open_clip.CLIP`` with the demo configuration.

    A list of ``vision_cfg["layers"]`` builds a ResNet image tower, an int a ViT
    (open_clip's rule). The ``preprocess_cfg`` mean and std, when given, are
    stored on ``model.visual`` (``image_mean``/``image_std``, where open_clip
    keeps them) and used by :func:`wrap_demo_clip` and
    ``train_demo_clip`` (``tools/_lib/vlp_training.py``).

    Args:
        config: architecture (default :data:`DEMO_VLP_CONFIG`)
        seed: seed of the initialisation (the global RNG is left alone);
            ``None`` draws from the global RNG
    """
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    config = copy.deepcopy(config if config is not None else DEMO_VLP_CONFIG)
    preprocess = config.pop("preprocess_cfg", None) or {}
    vision_cfg = CLIPVisionCfg(**config.pop("vision_cfg"))
    text_cfg = CLIPTextCfg(**config.pop("text_cfg"))
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = open_clip.CLIP(vision_cfg=vision_cfg, text_cfg=text_cfg, **config)
    for key, attribute in (("mean", "image_mean"), ("std", "image_std")):
        if key in preprocess:
            setattr(model.visual, attribute, _triple(preprocess[key], key))
    return model


def _triple(values: Sequence[float], what: str) -> Tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"Image {what} needs 3 values (RGB), got {values}")
    return values  # type: ignore[return-value]


def model_mean_std(
    model: nn.Module,
) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Image normalisation of a model (its ``preprocess_cfg``, else OpenAI's)."""
    visual = getattr(model, "visual", model)
    mean = getattr(visual, "image_mean", None)
    std = getattr(visual, "image_std", None)
    return (
        tuple(mean) if mean is not None else OPENAI_CLIP_MEAN,
        tuple(std) if std is not None else OPENAI_CLIP_STD,
    )


def _image_size(model: nn.Module) -> Tuple[int, int]:
    """Input size of the image tower: ViTs store ``(H, W)``, ResNets an int."""
    size = model.visual.image_size
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def wrap_demo_clip(
    model: nn.Module,
    autocast: bool = True,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    name: Optional[str] = None,
) -> OpenCLIPAdapter:
    r"""A trained CLIP of this family as a frozen VLP (open_clip tokenizer).

    Args:
        model: an ``open_clip.CLIP`` (ViT or ResNet image tower)
        autocast: run under ``torch.autocast`` on CUDA
        mean: image normalisation mean; default: the model's (see
            :func:`model_mean_std`)
        std: image normalisation std; default: the model's
        name: label of the VLP in logs and reports (default ``"demo-vlp"``)
    """
    model_mean, model_std = model_mean_std(model)
    return OpenCLIPAdapter.from_model(
        model,
        mean=_triple(mean if mean is not None else model_mean, "mean"),
        std=_triple(std if std is not None else model_std, "std"),
        image_size=_image_size(model),
        autocast=autocast,
        resize_mode="shortest",
        name=name if name is not None else DEMO_VLP_NAME,
    )


# --------------------------------------------------------------------------- files


def demo_state_dict(
    model: nn.Module,
    dtype: torch.dtype = torch.float16,
    token_ids: Optional[Iterable[int]] = None,
    captions: Optional[Sequence[str]] = None,
) -> Dict[str, Tensor]:
    r"""The compact state dict that is shipped (see the module docstring).

    Only the token-embedding rows of the tokens the captions use are kept. They
    are, by priority: ``token_ids``; the tokens of ``captions`` (open_clip's
    tokenizer at the model's context length, padding, start and end tokens
    included); the model's ``used_token_ids`` (set by
    ``train_demo_clip`` (``tools/_lib/vlp_training.py``) and
    :func:`load_demo_state_dict`).

    Args:
        model: a trained CLIP of this family
        dtype: floating-point type of the stored tensors
        token_ids: ids of the rows to keep
        captions: the training captions, whose tokens are kept

    Raises:
        ValueError: none of the three is given, both ``token_ids`` and
            ``captions`` are, or an id is outside the vocabulary
    """
    ids = _kept_token_ids(model, token_ids, captions)
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        state[key] = value.to(dtype) if value.is_floating_point() else value.clone()
    table = state.pop(_TOKEN_EMBEDDING)
    state[_KEPT_IDS] = ids
    state[_KEPT_ROWS] = table[ids].clone()
    return state


def _kept_token_ids(
    model: nn.Module,
    token_ids: Optional[Iterable[int]],
    captions: Optional[Sequence[str]],
) -> Tensor:
    if token_ids is not None and captions is not None:
        raise ValueError("Pass token_ids or captions, not both")
    if captions is not None:
        import open_clip

        tokenizer = open_clip.SimpleTokenizer(
            context_length=int(getattr(model, "context_length", 77))
        )
        token_ids = tokenizer(list(captions)).unique().tolist()
    if token_ids is None:
        token_ids = getattr(model, "used_token_ids", None)
    if token_ids is None:
        raise ValueError(
            "Which token-embedding rows to keep is unknown: pass token_ids= or "
            "captions= (the training captions), or set model.used_token_ids "
            "(train_demo_clip does); the full table is never stored silently"
        )
    ids = torch.as_tensor(sorted({int(i) for i in token_ids}), dtype=torch.long)
    vocab = model.token_embedding.weight.shape[0]
    if ids.numel() == 0:
        raise ValueError("No token ids to keep")
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"Token ids outside the vocabulary (0..{vocab - 1})")
    return ids


def load_demo_state_dict(model: nn.Module, state: Dict[str, Tensor]) -> nn.Module:
    """Loads a (compact or plain) demo state dict into ``model`` (strict)."""
    state = dict(state)
    if _KEPT_IDS in state:
        ids = state.pop(_KEPT_IDS).long()
        rows = state.pop(_KEPT_ROWS)
        table = model.token_embedding.weight
        if ids.numel() and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise ValueError(
                f"Token ids outside the vocabulary (0..{table.shape[0] - 1})"
            )
        full = torch.zeros(table.shape, dtype=rows.dtype)
        full[ids] = rows
        state[_TOKEN_EMBEDDING] = full
        model.used_token_ids = ids.tolist()
    model.load_state_dict(state, strict=True)
    return model


def load_zoo_vlp(
    name: str,
    path: Union[str, os.PathLike, None] = None,
    device: Union[str, torch.device] = "cpu",
    config: Optional[Dict[str, Any]] = None,
    autocast: bool = True,
    default_config: Optional[Dict[str, Any]] = None,
) -> OpenCLIPAdapter:
    r"""A shipped VLP of this family as a frozen
    :class:`~compressai_psic.vlp.VLPAdapter`.

    The adapter is named ``name`` and normalises images with the mean/std of
    the architecture's ``preprocess_cfg``.

    Args:
        name: manifest name (``"demo-vlp"``, ``"eval-vlp-rn"``, …)
        path: a weights file, loaded as it is; default: the file of the
            manifest entry ``name`` under ``zoo/`` (or the download cache),
            checked against the sha256 the manifest records
        device: where the model lives
        config: architecture; default: the manifest entry's ``config`` when
            ``path`` is not given, else ``default_config``
        autocast: run under ``torch.autocast`` on CUDA
        default_config: architecture when neither ``config`` nor the manifest
            gives one

    Raises:
        FileNotFoundError: ``path`` does not exist
        RuntimeError: the manifest has no entry ``name`` (and no ``path`` was
            given), or the file's sha256 differs from the manifest's
    """
    if path is None:
        entry = manifest_entry(name=name)
        if entry is None:
            raise RuntimeError(
                f"No '{name}' entry in {manifest_path()}; train one with "
                "`python tools/train_demo_vlp.py`"
            )
        path = weights_file(entry, progress=False)
        if config is None:
            config = entry.get("config")
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"VLP weights of '{name}' not found: {path}")
    if config is None:
        config = default_config
    model = build_demo_clip(config, seed=0)
    load_demo_state_dict(model, load_torch_file(path, map_location="cpu"))
    adapter = wrap_demo_clip(model.eval(), autocast=autocast, name=name)
    return adapter.to(device)


def load_demo_vlp(
    path: Union[str, os.PathLike, None] = None,
    device: Union[str, torch.device] = "cpu",
    config: Optional[Dict[str, Any]] = None,
    autocast: bool = True,
) -> OpenCLIPAdapter:
    r"""The shipped demo VLP as a frozen :class:`~compressai_psic.vlp.VLPAdapter`.

    Args:
        path: a weights file, loaded as it is; default: the file of the
            manifest entry ``demo-vlp`` under ``zoo/`` (or the download cache),
            checked against the sha256 the manifest records
        device: where the model lives
        config: architecture; default: the manifest entry's ``config``, else
            :data:`DEMO_VLP_CONFIG`
        autocast: run under ``torch.autocast`` on CUDA

    Raises:
        FileNotFoundError: ``path`` does not exist
        RuntimeError: the manifest has no ``demo-vlp`` entry, or the file's
            sha256 differs from the manifest's
    """
    return load_zoo_vlp(
        DEMO_VLP_NAME, path, device, config, autocast, default_config=DEMO_VLP_CONFIG
    )


def load_eval_vlp(
    which: str,
    path: Union[str, os.PathLike, None] = None,
    device: Union[str, torch.device] = "cpu",
    autocast: bool = True,
) -> OpenCLIPAdapter:
    r"""A shipped evaluation VLP (``"eval-rn"`` or ``"eval-vit"``), frozen.

    Evaluation VLPs are for measuring protection only: no shipped codec is
    trained against them (see ``zoo/EVAL_VLPS.md``).

    Args:
        which: a key of :data:`EVAL_VLPS` (``"eval_rn"`` is accepted too)
        path: a weights file instead of the manifest's (sha256-checked) one
        device: where the model lives
        autocast: run under ``torch.autocast`` on CUDA

    Raises:
        ValueError: ``which`` is not an evaluation VLP
    """
    key = which.strip().lower().replace("_", "-")
    if key not in EVAL_VLPS:
        raise ValueError(
            f"Unknown evaluation VLP '{which}': use one of {sorted(EVAL_VLPS)}"
        )
    name, arch = EVAL_VLPS[key]
    return load_zoo_vlp(
        name,
        path,
        device,
        autocast=autocast,
        default_config=VLP_ARCHITECTURES[arch],
    )
