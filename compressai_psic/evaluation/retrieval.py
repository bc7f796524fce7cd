r"""Cross-modal retrieval metrics: how well a VLP matches images with captions.

A protected decode succeeds when a vision-language model can no longer match the
image with its captions, while the full decode still can. This module measures,
on embeddings and similarity matrices only,

- **Recall@K** image→text (a hit when any caption of the image is among the ``K``
  captions most similar to it) and text→image (a hit when the caption's image is
  among the ``K`` images most similar to it), with several captions per image;
- the **attack success rate** (ASR): the share of queries that a reference
  (the full decode, or the original image) hits at top-``K`` and the protected
  decode misses;
- the chance level of Recall@K (:func:`chance_recall`);

and embeds images and captions in batches (:func:`embed_images`,
:func:`embed_texts`). :func:`~compressai_psic.evaluation.shield.evaluate_shield`
runs them on a codec's decodes.

Ties: a query's rank counts every wrong candidate that scores *at least* as
high as its best right candidate, so a model that gives every candidate the same
score hits nothing (ties never count in the model's favour).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..vlp import VLPAdapter, VLPEnsemble

__all__ = [
    "DEFAULT_KS",
    "DIRECTIONS",
    "Embeddings",
    "ImageToCaptions",
    "attack_success_rate",
    "caption_owners",
    "chance_recall",
    "embed_images",
    "embed_texts",
    "recall_at_k",
    "recall_from_hits",
    "retrieval_hits",
    "similarity",
]

DEFAULT_KS = (1, 5, 10)
DIRECTIONS = ("i2t", "t2i")

Embeddings = Union[Tensor, Sequence[Tensor]]
ImageToCaptions = Sequence[Union[int, Sequence[int]]]


# --------------------------------------------------------------------------- metrics


def similarity(
    image_emb: Embeddings,
    text_emb: Embeddings,
    weights: Optional[Sequence[float]] = None,
) -> Tensor:
    r"""Cosine similarity matrix ``(num_images, num_texts)``.

    Embeddings are L2-normalised here, so raw features work too. For an ensemble
    pass one embedding tensor per member (lists of equal length); the result is
    the weighted mean of the members' matrices (uniform weights by default).
    """
    if isinstance(image_emb, Tensor) != isinstance(text_emb, Tensor):
        raise ValueError("Give both embeddings as tensors, or both as lists")
    if isinstance(image_emb, Tensor):
        image_emb, text_emb = [image_emb], [text_emb]
    image_emb, text_emb = list(image_emb), list(text_emb)
    if not image_emb or len(image_emb) != len(text_emb):
        raise ValueError(
            f"Need one image and one text embedding per member, got "
            f"{len(image_emb)} and {len(text_emb)}"
        )
    if weights is None:
        weights = [1.0] * len(image_emb)
    if len(weights) != len(image_emb):
        raise ValueError(f"Need {len(image_emb)} weights, got {len(weights)}")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    sim = None
    for image, text, weight in zip(image_emb, text_emb, weights):
        if image.dim() != 2 or text.dim() != 2 or image.size(1) != text.size(1):
            raise ValueError(
                f"Expected (N, D) and (M, D) embeddings, got {tuple(image.shape)} "
                f"and {tuple(text.shape)}"
            )
        term = (
            F.normalize(image.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t()
        )
        term = term * (float(weight) / total)
        sim = term if sim is None else sim + term.to(sim.device)
    return sim


def caption_owners(image_to_caption_ids: ImageToCaptions, num_texts: int) -> Tensor:
    r"""Image index of every caption, from each image's caption indices.

    Args:
        image_to_caption_ids: for each image, its caption indices (a list), or a
            single index when the image has one caption
        num_texts: number of captions

    Raises:
        ValueError: a caption belongs to no image or to several, or an index is
            out of range
    """
    owners = torch.full((num_texts,), -1, dtype=torch.long)
    for image, ids in enumerate(image_to_caption_ids):
        ids = (
            [int(ids)]
            if isinstance(ids, (int, Tensor))
            and not (isinstance(ids, Tensor) and ids.dim() > 0)
            else [int(i) for i in ids]
        )
        if not ids:
            raise ValueError(f"Image {image} has no caption")
        for caption in ids:
            if not 0 <= caption < num_texts:
                raise ValueError(
                    f"Caption index {caption} of image {image} is out of range "
                    f"(0..{num_texts - 1})"
                )
            if owners[caption] >= 0:
                raise ValueError(
                    f"Caption {caption} belongs to images {int(owners[caption])} and "
                    f"{image}; each caption must belong to exactly one image"
                )
            owners[caption] = image
    orphans = (owners < 0).nonzero().flatten().tolist()
    if orphans:
        raise ValueError(f"Captions {orphans[:10]} belong to no image")
    return owners


def retrieval_hits(
    sim: Tensor, image_to_caption_ids: ImageToCaptions, ks: Sequence[int] = DEFAULT_KS
) -> Dict[str, Dict[int, Tensor]]:
    r"""Per-query hits at each ``K``, in both directions.

    Args:
        sim: ``(num_images, num_texts)`` similarities
        image_to_caption_ids: each image's caption indices (see
            :func:`caption_owners`)
        ks: the cut-offs

    Returns:
        ``{"i2t": {k: BoolTensor(num_images)}, "t2i": {k: BoolTensor(num_texts)}}``
    """
    if sim.dim() != 2:
        raise ValueError(f"Expected a (num_images, num_texts) matrix, got {sim.shape}")
    num_images, num_texts = sim.shape
    if len(image_to_caption_ids) != num_images:
        raise ValueError(
            f"{num_images} images in sim but {len(image_to_caption_ids)} caption lists"
        )
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    sim = sim.detach().float().cpu()
    owners = caption_owners(image_to_caption_ids, num_texts)
    correct = torch.zeros(num_images, num_texts, dtype=torch.bool)
    correct[owners, torch.arange(num_texts)] = True

    # Image→text: rank of the best right caption among the wrong ones.
    best_right = sim.masked_fill(~correct, float("-inf")).amax(dim=1, keepdim=True)
    i2t_rank = ((sim >= best_right) & ~correct).sum(dim=1)
    # Text→image: rank of the caption's image among the other images.
    right = sim[owners, torch.arange(num_texts)]
    t2i_rank = ((sim >= right[None, :]) & ~correct).sum(dim=0)
    return {
        "i2t": {k: i2t_rank < k for k in ks},
        "t2i": {k: t2i_rank < k for k in ks},
    }


def recall_from_hits(hits: Mapping[str, Mapping[int, Tensor]]) -> Dict[str, Dict]:
    """``{"i2t": {"R@1": ...}, "t2i": {...}}`` from :func:`retrieval_hits`."""
    return {
        direction: {
            f"R@{k}": float(h.double().mean()) if h.numel() else float("nan")
            for k, h in by_k.items()
        }
        for direction, by_k in hits.items()
    }


def recall_at_k(
    sim: Tensor, image_to_caption_ids: ImageToCaptions, ks: Sequence[int] = DEFAULT_KS
) -> Dict[str, Dict[str, float]]:
    r"""Recall@K image→text and text→image.

    Returns:
        ``{"i2t": {"R@1": r, "R@5": r, ...}, "t2i": {...}}``, fractions in [0, 1]
    """
    return recall_from_hits(retrieval_hits(sim, image_to_caption_ids, ks))


def attack_success_rate(
    hits_reference: Tensor, hits_protected: Tensor, relative: bool = False
) -> float:
    r"""Share of queries hit by the reference and missed by the protected images.

    Args:
        hits_reference: per-query hits (bool) on the reference (full decode or
            original images)
        hits_protected: per-query hits on the protected decode, same queries
        relative: divide by the reference's hits instead of all queries (the
            share of what the reference found that protection hides)
    """
    hits_reference = torch.as_tensor(hits_reference, dtype=torch.bool)
    hits_protected = torch.as_tensor(hits_protected, dtype=torch.bool)
    if hits_reference.shape != hits_protected.shape:
        raise ValueError(
            f"Hit vectors differ in shape: {tuple(hits_reference.shape)} vs "
            f"{tuple(hits_protected.shape)}"
        )
    success = (hits_reference & ~hits_protected).sum().item()
    denominator = hits_reference.sum().item() if relative else hits_reference.numel()
    return float(success / denominator) if denominator else 0.0


def chance_recall(
    image_to_caption_ids: ImageToCaptions, ks: Sequence[int] = DEFAULT_KS
) -> Dict[str, Dict[str, float]]:
    r"""Expected Recall@K of a random ranking (the chance level), both ways."""
    counts = [
        len(ids) if isinstance(ids, Sequence) or getattr(ids, "dim", int)() else 1
        for ids in image_to_caption_ids
    ]
    num_images, num_texts = len(counts), sum(counts)
    out: Dict[str, Dict[str, float]] = {"i2t": {}, "t2i": {}}
    for k in ks:
        k = int(k)
        misses = [
            math.comb(num_texts - c, k) / math.comb(num_texts, k)
            if k <= num_texts
            else 0.0
            for c in counts
        ]
        out["i2t"][f"R@{k}"] = 1.0 - sum(misses) / num_images
        out["t2i"][f"R@{k}"] = min(1.0, k / num_images)
    return out


# --------------------------------------------------------------------------- embedding


def _encode_batches(
    encode: Callable[[Any], Union[Tensor, List[Tensor]]], chunks: List[Any]
) -> Embeddings:
    outputs = [encode(chunk) for chunk in chunks]
    if isinstance(outputs[0], Tensor):
        return torch.cat([o.float().cpu() for o in outputs])
    members = len(outputs[0])
    return [torch.cat([o[m].float().cpu() for o in outputs]) for m in range(members)]


@torch.no_grad()
def embed_images(
    vlp: Union[VLPAdapter, VLPEnsemble],
    images: Union[Tensor, Sequence[Tensor]],
    batch_size: int = 64,
) -> Embeddings:
    r"""L2-normalised image embeddings (on the CPU), without gradients.

    Args:
        vlp: a VLP adapter, or an ensemble (then one tensor per member)
        images: ``(N, 3, H, W)`` in [0, 1], or a list of ``(3, H, W)`` tensors of
            any sizes (images of one size are batched together)
        batch_size: images per encoder call
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = vlp.device
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(f"Expected (N, 3, H, W) images, got {tuple(images.shape)}")
        chunks = list(images.split(batch_size))
        return _encode_batches(lambda c: vlp.encode_image(c.to(device)), chunks)
    images = list(images)
    if not images:
        raise ValueError("No images to embed")
    # Group by size, embed, then put the rows back in input order.
    by_size: Dict[tuple, List[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(i)
    order: List[int] = []
    chunks = []
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            part = indices[start : start + batch_size]
            order.extend(part)
            chunks.append(torch.stack([images[i] for i in part]))
    stacked = _encode_batches(lambda c: vlp.encode_image(c.to(device)), chunks)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.as_tensor(order)] = torch.arange(len(order))
    if isinstance(stacked, Tensor):
        return stacked[inverse]
    return [member[inverse] for member in stacked]


@torch.no_grad()
def embed_texts(
    vlp: Union[VLPAdapter, VLPEnsemble], captions: Sequence[str], batch_size: int = 256
) -> Embeddings:
    """L2-normalised text embeddings (on the CPU); one tensor per ensemble member."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    captions = list(captions)
    if not captions:
        raise ValueError("No captions to embed")
    chunks = [captions[i : i + batch_size] for i in range(0, len(captions), batch_size)]
    return _encode_batches(vlp.encode_text, chunks)
