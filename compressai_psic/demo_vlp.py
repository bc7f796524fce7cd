r"""A small CLIP-architecture VLP trained on the procedural scene benchmark.

PSIC is trained and evaluated against a frozen vision-language model (CLIP
ViT-B/32 in `"Privacy-Shielded Image Compression: Defending Against Exploitation
from Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_,
ICML 2025). Pretrained CLIP weights cannot be downloaded everywhere, and they are
far too slow for a one-minute CPU demonstration, so the package ships a *demo
VLP*: open_clip's own :class:`open_clip.CLIP` with a small configuration
(:data:`DEMO_VLP_CONFIG`, a ViT image tower at 64×64 pixels and a three-layer
text transformer fed by open_clip's BPE tokenizer), trained contrastively from
scratch on the training split of :mod:`compressai_psic.scenes`. It reads scenes
it never saw (the test split) well enough to retrieve their captions, which is
what a codec's protected decode must prevent.

The same code trains the *evaluation VLPs* (:data:`EVAL_VLPS`): CLIPs of other
architecture families (a ResNet image tower, a wider and shallower ViT), with
their own seeds and image normalisation, trained on the training split with the
held-out test scenes excluded. A codec is trained against the demo VLP (or
others) and its protection is measured on these, which it never saw.

- :func:`build_demo_clip` builds the (untrained) model from a configuration
  (:data:`VLP_ARCHITECTURES` names the three shipped ones);
- :func:`load_demo_vlp` loads the shipped weights (manifest entry ``demo-vlp``,
  sha256-checked) as a frozen :class:`~compressai_psic.vlp.VLPAdapter`;
  :func:`load_eval_vlp` does the same for ``eval-rn`` and ``eval-vit``, and
  :func:`load_zoo_vlp` for any manifest entry of this family;
- :func:`train_demo_clip` is the training recipe used by
  ``tools/train_demo_vlp.py`` (symmetric InfoNCE, learnable logit scale, AdamW,
  warm-up then cosine learning rate);
- :func:`demo_state_dict` / :func:`load_demo_state_dict` convert between the
  model and the compact file format.

File format: a dict of tensors (``torch.load(..., weights_only=True)`` reads it).
Captions of the benchmark use fewer than a hundred of the tokenizer's 49,408
tokens, and the rows of the token-embedding table that training never touches
hold their random initialisation only. The file therefore keeps the used rows
(``token_embedding.kept_rows``) and their ids (``token_embedding.kept_ids``);
the other rows load as zeros. Every other entry is the model's state dict.
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .scenes import SceneSample, render_scene, split_samples
from .vlp import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, OpenCLIPAdapter

__all__ = [
    "DEMO_VLP_CONFIG",
    "DEMO_VLP_NAME",
    "EVAL_RN_CONFIG",
    "EVAL_VIT_CONFIG",
    "EVAL_VLPS",
    "VLP_ARCHITECTURES",
    "DemoTrainConfig",
    "build_demo_clip",
    "demo_state_dict",
    "encode_captions",
    "evaluate_demo_clip",
    "held_out_captions",
    "load_demo_state_dict",
    "load_demo_vlp",
    "load_eval_vlp",
    "load_zoo_vlp",
    "model_mean_std",
    "render_images",
    "train_demo_clip",
    "training_samples",
    "wrap_demo_clip",
]

#: Manifest name of the shipped demo VLP.
DEMO_VLP_NAME = "demo-vlp"

#: Architecture of the demo VLP: keyword arguments of ``open_clip.CLIP`` (the
#: tower configurations as dicts). Captions of the benchmark are at most 40
#: tokens long with open_clip's tokenizer (start and end tokens included).
#: A ``preprocess_cfg`` entry (open_clip's spelling: ``{"mean": …, "std": …}``)
#: sets the image normalisation; without it OpenAI CLIP's is used.
DEMO_VLP_CONFIG: Dict[str, Any] = {
    "embed_dim": 128,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 128,
        "head_width": 64,
        "layers": 3,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {
        "context_length": 48,
        "vocab_size": 49408,
        "width": 64,
        "heads": 2,
        "layers": 3,
        "mlp_ratio": 4.0,
    },
}

#: Evaluation VLP with a ResNet image tower (open_clip's ``ModifiedResNet``, as
#: in OpenAI's RN50, with one bottleneck per stage and base width 16), another
#: text tower and ImageNet's normalisation.
EVAL_RN_CONFIG: Dict[str, Any] = {
    "embed_dim": 128,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 16,
        "head_width": 32,
    },
    "text_cfg": {
        "context_length": 48,
        "vocab_size": 49408,
        "width": 96,
        "heads": 2,
        "layers": 2,
        "mlp_ratio": 4.0,
    },
    "preprocess_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
}

#: Evaluation VLP with a ViT image tower wider and shallower than the demo
#: VLP's (width 192, 2 layers), another text tower and embedding size, and
#: inputs normalised to ``[-1, 1]``.
EVAL_VIT_CONFIG: Dict[str, Any] = {
    "embed_dim": 96,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 192,
        "head_width": 64,
        "layers": 2,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {
        "context_length": 48,
        "vocab_size": 49408,
        "width": 128,
        "heads": 2,
        "layers": 2,
        "mlp_ratio": 4.0,
    },
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}

#: Named architectures of ``tools/train_demo_vlp.py --arch``.
VLP_ARCHITECTURES: Dict[str, Dict[str, Any]] = {
    "vit": DEMO_VLP_CONFIG,
    "resnet": EVAL_RN_CONFIG,
    "vit-wide": EVAL_VIT_CONFIG,
}

#: Evaluation VLPs: spec of :func:`~compressai_psic.vlp.build_vlp` → manifest
#: name and architecture. Codecs are not trained against them.
EVAL_VLPS: Dict[str, Tuple[str, str]] = {
    "eval-rn": ("eval-vlp-rn", "resnet"),
    "eval-vit": ("eval-vlp-vit", "vit-wide"),
}

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
    keeps them) and used by :func:`wrap_demo_clip` and :func:`train_demo_clip`.

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
    included); the model's ``used_token_ids`` (set by :func:`train_demo_clip`
    and :func:`load_demo_state_dict`).

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
    from .utils import load_torch_file
    from .zoo import _weights_file, manifest_entry, manifest_path

    if path is None:
        entry = manifest_entry(name=name)
        if entry is None:
            raise RuntimeError(
                f"No '{name}' entry in {manifest_path()}; train one with "
                "`python tools/train_demo_vlp.py`"
            )
        path = _weights_file(entry, progress=False)
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


# --------------------------------------------------------------------------- data


def render_images(
    samples: Sequence[SceneSample],
    image_size: int = 64,
    supersample: int = 2,
    progress: bool = False,
) -> Tensor:
    """Renders scenes into one ``(N, 3, S, S)`` uint8 tensor (compact in memory)."""
    out = torch.empty((len(samples), 3, image_size, image_size), dtype=torch.uint8)
    iterator: Any = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="render", unit="img", leave=False)
    for i, sample in enumerate(iterator):
        array = np.asarray(render_scene(sample.spec, image_size, supersample))
        out[i] = torch.from_numpy(array.copy()).permute(2, 0, 1)
    return out


def encode_captions(
    samples: Sequence[SceneSample], tokenizer: Callable[[List[str]], Tensor]
) -> Tensor:
    """Tokens ``(N, K, L)`` of the ``K`` captions of every sample.

    Identical captions are tokenised once (the tokenizer is pure Python).
    """
    count = len(samples[0].captions) if samples else 0
    if any(len(s.captions) != count for s in samples):
        raise ValueError("Every sample needs the same number of captions")
    flat = [c for s in samples for c in s.captions]
    unique = sorted(set(flat))
    tokens = tokenizer(unique)
    lookup = {caption: i for i, caption in enumerate(unique)}
    index = torch.as_tensor([lookup[c] for c in flat], dtype=torch.long)
    return tokens[index].view(len(samples), count, -1)


# --------------------------------------------------------------------------- training


class DemoTrainConfig(dict):
    r"""Training recipe of the demo VLP (a dict with defaults; keys below).

    - ``train_scenes`` (20000): scenes of the training split, rendered once;
    - ``captions_per_image`` (5): canonical caption plus rewordings, one drawn
      per image and step;
    - ``steps`` (1200), ``batch_size`` (128);
    - ``lr`` (1e-3), ``min_lr`` (1e-5), ``warmup_steps`` (50),
      ``weight_decay`` (0.05; not on gains, biases, embeddings, logit scale);
    - ``augment`` (True): random shifts of up to two pixels, mild blur and
      noise, so that codec reconstructions stay readable;
    - ``image_size`` (64), ``supersample`` (2);
    - ``seed`` (0): the default of the three seeds below;
    - ``scene_seed`` (``None``: ``seed``): benchmark seed of the training
      scenes (which scenes and captions);
    - ``init_seed`` (``None``: ``seed``): the model's initialisation;
    - ``shuffle_seed`` (``None``: ``seed``): batch order, caption drawn per
      step and augmentation;
    - ``exclude_test_scenes`` (0) and ``exclude_test_seeds`` ([0]): training
      scenes whose canonical caption is one of the first
      ``exclude_test_scenes`` test scenes (distinct captions) of each seed are
      skipped (and replaced by later ones), so that retrieval on those test
      scenes never meets a training caption.
    """

    DEFAULTS: Dict[str, Any] = {
        "train_scenes": 20000,
        "captions_per_image": 5,
        "steps": 1200,
        "batch_size": 128,
        "lr": 1e-3,
        "min_lr": 1e-5,
        "warmup_steps": 50,
        "weight_decay": 0.05,
        "augment": True,
        "image_size": 64,
        "supersample": 2,
        "seed": 0,
        "scene_seed": None,
        "init_seed": None,
        "shuffle_seed": None,
        "exclude_test_scenes": 0,
        "exclude_test_seeds": [0],
    }

    def __init__(self, **overrides: Any):
        unknown = sorted(set(overrides) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(
                f"Unknown training options {unknown}; allowed: {sorted(self.DEFAULTS)}"
            )
        super().__init__({**copy.deepcopy(self.DEFAULTS), **overrides})

    def seeds(self) -> Dict[str, int]:
        """The scene, init and shuffle seeds, ``None`` resolved to ``seed``."""
        return {
            key: int(self[key] if self[key] is not None else self["seed"])
            for key in ("scene_seed", "init_seed", "shuffle_seed")
        }


def held_out_captions(
    num_scenes: int, seeds: Iterable[int] = (0,), split: str = "test"
) -> Set[str]:
    """Canonical captions of the first ``num_scenes`` scenes (distinct captions)
    of ``split`` for each benchmark seed: what evaluation retrieves."""
    captions: Set[str] = set()
    for seed in seeds:
        samples = split_samples(split, num_scenes, int(seed), distinct_captions=True)
        captions.update(s.captions[0] for s in samples)
    return captions


def training_samples(
    n: int,
    seed: int = 0,
    captions_per_image: int = 1,
    exclude: Optional[Collection[str]] = None,
) -> List[SceneSample]:
    r"""The first ``n`` training scenes that ``exclude`` does not name.

    Args:
        n: how many scenes
        seed: benchmark seed
        captions_per_image: captions per scene
        exclude: scene names (``"train_000123"``, see
            :attr:`~compressai_psic.scenes.SceneSample.name`) and canonical
            captions to skip; later scenes of the split take their place
    """
    exclude = set(exclude or ())
    extra = 0
    while True:
        drawn = split_samples("train", n + extra, seed, captions_per_image)
        kept = [
            s for s in drawn if s.name not in exclude and s.captions[0] not in exclude
        ]
        if len(kept) >= n:
            return kept[:n]
        if extra > 50 * n + 1000:
            raise ValueError(f"Could not find {n} training scenes outside 'exclude'")
        extra = max(2 * extra, n - len(kept) + 64)


def _lr_at(step: int, cfg: Dict[str, Any]) -> float:
    warmup = max(int(cfg["warmup_steps"]), 1)
    if step < warmup:
        return cfg["lr"] * (step + 1) / warmup
    progress = (step - warmup) / max(cfg["steps"] - warmup, 1)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return cfg["min_lr"] + (cfg["lr"] - cfg["min_lr"]) * cosine


def _param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # As in CLIP: matrices decay; gains, biases, embeddings and the
        # temperature do not.
        exempt = (
            param.ndim < 2
            or "embedding" in name
            or name.endswith("class_embedding")
            or "logit_scale" in name
        )
        (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts (≤ 2 px, edge-replicated), mild blur and noise, per image."""
    batch, _, height, width = images.shape
    pad = 2
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    rows = dy[:, None] + torch.arange(height)[None, :]  # (B, H)
    cols = dx[:, None] + torch.arange(width)[None, :]  # (B, W)
    index = torch.arange(batch)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    images = shifted.permute(0, 3, 1, 2)
    # Blur a third of the images with a 3×3 binomial kernel (codec-like softness).
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :]) / 16.0
    kernel = kernel.expand(3, 1, 3, 3).to(images)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    blur = (torch.rand(batch, generator=generator) < 1 / 3).to(images)
    images = images + blur.view(-1, 1, 1, 1) * (blurred - images)
    sigma = torch.rand(batch, generator=generator) * 0.03
    noise = torch.randn(images.shape, generator=generator) * sigma.view(-1, 1, 1, 1)
    return (images + noise.to(images)).clamp(0.0, 1.0)


def _normalise(images: Tensor, model: nn.Module) -> Tensor:
    """The model's own mean/std normalisation (as its adapter applies it)."""
    mean, std = model_mean_std(model)
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def train_demo_clip(
    config: Optional[Dict[str, Any]] = None,
    model_config: Optional[Dict[str, Any]] = None,
    device: Union[str, torch.device] = "cpu",
    log: Optional[Callable[[str], None]] = print,
    log_every: int = 100,
    eval_fn: Optional[Callable[[nn.Module], Dict[str, float]]] = None,
    eval_every: int = 0,
    exclude: Optional[Collection[str]] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    r"""Trains a demo CLIP from scratch on the scene benchmark's training split.

    The loss is CLIP's symmetric InfoNCE: cross-entropy of the image→text and
    text→image similarity matrices of a batch (scaled by the learnable logit
    scale, clamped at 100) towards the diagonal. Each image meets one of its
    captions, drawn anew every step. Images are normalised with the
    architecture's mean/std (see :func:`model_mean_std`), as its adapter does.

    Three independent seeds (see :class:`DemoTrainConfig`) choose the scenes,
    the initialisation and the batches: changing one leaves what the others
    choose unchanged.

    Args:
        config: training recipe (see :class:`DemoTrainConfig`)
        model_config: architecture (default :data:`DEMO_VLP_CONFIG`)
        device: where to train
        log: receives progress lines (``None``: silent)
        log_every: steps between log lines
        eval_fn: called with the model (in eval mode) every ``eval_every`` steps
            and at the end; its dict is logged and kept in the history
        eval_every: steps between evaluations (0: only at the end)
        exclude: training scenes to skip, by name or canonical caption (see
            :func:`training_samples`), on top of the recipe's
            ``exclude_test_scenes``

    Returns:
        ``(model, info)``: the trained model in eval mode (with
        ``used_token_ids``, the tokens of its training captions) and a dict
        with ``train_seconds`` (wall time of the whole call),
        ``prepare_seconds``, ``final_loss``, ``history``, the recipe, the
        resolved ``seeds``, ``scene_names`` (the training scenes),
        ``excluded`` (how many captions and names were excluded) and
        ``skipped_scenes`` (how many training scenes they removed)
    """
    cfg = DemoTrainConfig(**(config or {}))
    import open_clip

    start = time.perf_counter()
    say = log if log is not None else (lambda _line: None)
    model_config = copy.deepcopy(model_config or DEMO_VLP_CONFIG)
    seeds = cfg.seeds()
    model = build_demo_clip(model_config, seed=seeds["init_seed"]).to(device).train()
    tokenizer = open_clip.SimpleTokenizer(
        context_length=model_config["text_cfg"]["context_length"]
    )

    excluded = set(exclude or ())
    if cfg["exclude_test_scenes"]:
        excluded |= held_out_captions(
            int(cfg["exclude_test_scenes"]), cfg["exclude_test_seeds"]
        )
    samples = training_samples(
        cfg["train_scenes"], seeds["scene_seed"], cfg["captions_per_image"], excluded
    )
    images = render_images(samples, cfg["image_size"], cfg["supersample"])
    tokens = encode_captions(samples, tokenizer)
    model.used_token_ids = sorted(set(tokens.unique().tolist()))
    prepare_seconds = time.perf_counter() - start
    say(
        f"prepared {len(samples)} scenes × {cfg['captions_per_image']} captions "
        f"({len(model.used_token_ids)} distinct tokens) in {prepare_seconds:.1f} s"
    )

    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg["weight_decay"]),
        lr=cfg["lr"],
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    generator = torch.Generator().manual_seed(seeds["shuffle_seed"])
    batch_size = min(int(cfg["batch_size"]), len(samples))
    order = torch.randperm(len(samples), generator=generator)
    cursor = 0
    history: List[Dict[str, Any]] = []
    running = None
    labels = torch.arange(batch_size, device=device)
    loss_value = float("nan")
    for step in range(int(cfg["steps"])):
        if cursor + batch_size > len(order):
            order = torch.randperm(len(samples), generator=generator)
            cursor = 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        choice = torch.randint(tokens.shape[1], (batch_size,), generator=generator)
        batch_tokens = tokens[index, choice].to(device)
        batch_images = images[index].float().div_(255.0)
        if cfg["augment"]:
            batch_images = _augment(batch_images, generator)
        batch_images = _normalise(batch_images.to(device), model)

        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        image_features, text_features, logit_scale = model(batch_images, batch_tokens)
        logits = logit_scale * image_features @ text_features.t()
        loss = 0.5 * (
            F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100.0))

        loss_value = float(loss.detach())
        running = loss_value if running is None else 0.95 * running + 0.05 * loss_value
        last = step + 1 == int(cfg["steps"])
        record: Dict[str, Any] = {}
        if eval_fn is not None and (
            last or (eval_every > 0 and (step + 1) % eval_every == 0)
        ):
            model.eval()
            record = dict(eval_fn(model))
            model.train()
        if record or (step + 1) % log_every == 0 or last:
            elapsed = time.perf_counter() - start
            entry = {
                "step": step + 1,
                "loss": round(running, 4),
                "logit_scale": round(float(model.logit_scale.detach().exp()), 2),
                "lr": _lr_at(step, cfg),
                "seconds": round(elapsed, 1),
                **record,
            }
            history.append(entry)
            extras = " ".join(f"{k}={v:.3f}" for k, v in record.items())
            say(
                f"step {step + 1}/{cfg['steps']} loss {running:.4f} "
                f"scale {entry['logit_scale']:.1f} lr {entry['lr']:.2e} "
                f"{elapsed:.0f}s {extras}".rstrip()
            )
    model.eval()
    info = {
        "train_seconds": time.perf_counter() - start,
        "prepare_seconds": prepare_seconds,
        "final_loss": loss_value,
        "history": history,
        "recipe": dict(cfg),
        "seeds": seeds,
        "scene_names": [s.name for s in samples],
        "excluded": len(excluded),
        "skipped_scenes": samples[-1].index + 1 - len(samples) if samples else 0,
    }
    return model, info


# --------------------------------------------------------------------------- eval


@torch.no_grad()
def evaluate_demo_clip(
    vlp_or_model: Union[nn.Module, OpenCLIPAdapter],
    num_scenes: int = 100,
    split: str = "test",
    seed: int = 0,
    image_size: int = 64,
    batch_size: int = 100,
) -> Dict[str, float]:
    r"""``num_scenes``-way retrieval Recall@1/5 on a held-out split.

    Scenes come from :func:`~compressai_psic.scenes.split_samples` with distinct
    canonical captions (exactly one right caption per image); images go through
    the VLP adapter's own preprocessing, as at inference.

    Returns:
        dict with ``i2t_R@1``, ``i2t_R@5``, ``t2i_R@1``, ``t2i_R@5``
    """
    from .retrieval import embed_images, embed_texts, recall_at_k, similarity

    vlp = vlp_or_model
    if not isinstance(vlp, OpenCLIPAdapter):
        # The adapter freezes what it wraps: wrap a copy of a model in training.
        vlp = wrap_demo_clip(copy.deepcopy(vlp_or_model).eval(), autocast=False)
    samples = split_samples(split, num_scenes, seed, distinct_captions=True)
    images = render_images(samples, image_size).float().div_(255.0)
    captions = [s.captions[0] for s in samples]
    image_emb = embed_images(vlp, images, batch_size)
    text_emb = embed_texts(vlp, captions, batch_size)
    recalls = recall_at_k(
        similarity(image_emb, text_emb), list(range(num_scenes)), ks=(1, 5)
    )
    return {
        "i2t_R@1": recalls["i2t"]["R@1"],
        "i2t_R@5": recalls["i2t"]["R@5"],
        "t2i_R@1": recalls["t2i"]["R@1"],
        "t2i_R@5": recalls["t2i"]["R@5"],
    }
