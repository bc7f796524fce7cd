r"""Training recipe of the scene CLIPs shipped under ``zoo/``.

The demo VLP and the evaluation VLPs (:mod:`compressai_psic.vlp.zoo_vlps`) are
trained contrastively from scratch on the training split of the scene benchmark
(:mod:`compressai_psic.datasets.scenes`) by :func:`train_demo_clip`, the recipe
``tools/train_demo_vlp.py`` runs: symmetric InfoNCE, learnable logit scale,
AdamW, warm-up then cosine learning rate (:class:`DemoTrainConfig`).
:func:`evaluate_demo_clip` measures retrieval on held-out scenes;
:func:`held_out_captions` and :func:`training_samples` keep the evaluated test
scenes out of training.
"""

from __future__ import annotations

import copy
import math
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

from compressai_psic.datasets.scenes import SceneSample, render_scene, split_samples
from compressai_psic.evaluation.retrieval import (
    embed_images,
    embed_texts,
    recall_at_k,
    similarity,
)
from compressai_psic.vlp import (
    DEMO_VLP_CONFIG,
    OpenCLIPAdapter,
    build_demo_clip,
    model_mean_std,
    wrap_demo_clip,
)

__all__ = [
    "DemoTrainConfig",
    "encode_captions",
    "evaluate_demo_clip",
    "held_out_captions",
    "render_images",
    "train_demo_clip",
    "training_samples",
]


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
            :attr:`~compressai_psic.datasets.scenes.SceneSample.name`) and canonical
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

    Scenes come from :func:`~compressai_psic.datasets.scenes.split_samples` with
    distinct
    canonical captions (exactly one right caption per image); images go through
    the VLP adapter's own preprocessing, as at inference.

    Returns:
        dict with ``i2t_R@1``, ``i2t_R@5``, ``t2i_R@1``, ``t2i_R@5``
    """
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
