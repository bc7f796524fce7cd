r"""Privacy against VLPs: cross-modal retrieval on original, full and protected images.

A protected decode succeeds when a vision-language model can no longer match the
image with its captions, while the full decode still can. Following
`"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025,
this module measures

- **Recall@K** image→text (a hit when any caption of the image is among the ``K``
  captions most similar to it) and text→image (a hit when the caption's image is
  among the ``K`` images most similar to it), with several captions per image;
- the **attack success rate** (ASR): the share of queries that a reference
  (the full decode, or the original image) hits at top-``K`` and the protected
  decode misses;
- **robustness**: the same after the protected image goes through what a
  scraper's pipeline does to it (:func:`scraper_transforms`: JPEG at quality 75
  and 90, downscaling by ½).

The metric functions work on embeddings and similarity matrices only;
:func:`evaluate_privacy` runs the whole evaluation of a shielded codec over a
caption dataset (any object with ``len``, ``load_image(i)`` and
``image_captions_at(i)``, e.g. :class:`~compressai_psic.datasets.Flickr8kCaptions`
or :class:`~compressai_psic.datasets.SceneCaptions`).

Ties: a query's rank counts every wrong candidate that scores *at least* as
high as its best right candidate, so a model that gives every candidate the same
score hits nothing (ties never count in the model's favour).
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .utils import crop_padding, pad_to_multiple
from .vlp import VLPAdapter, VLPEnsemble, vlp_members

__all__ = [
    "DEFAULT_KS",
    "DIRECTIONS",
    "ROBUSTNESS_VARIANTS",
    "attack_success_rate",
    "caption_owners",
    "codec_roundtrip",
    "downscale",
    "embed_images",
    "embed_texts",
    "evaluate_privacy",
    "jpeg_reencode",
    "recall_at_k",
    "recall_from_hits",
    "retrieval_hits",
    "scraper_transforms",
    "similarity",
]

DEFAULT_KS = (1, 5, 10)
DIRECTIONS = ("i2t", "t2i")
#: Names of the variants :func:`scraper_transforms` produces, in order.
ROBUSTNESS_VARIANTS = ("jpeg75", "jpeg90", "down2")

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


# --------------------------------------------------------------------------- scrapers


def _to_pil(image: Tensor) -> Image.Image:
    array = image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
    return Image.fromarray(array.cpu().numpy())


def _from_pil(image: Image.Image, like: Tensor) -> Tensor:
    array = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    return array.permute(2, 0, 1).to(device=like.device, dtype=torch.float32) / 255.0


def jpeg_reencode(images: Tensor, quality: int) -> Tensor:
    r"""Re-encodes ``(B, 3, H, W)`` images in [0, 1] as JPEG in memory (PIL,
    4:2:0 chroma subsampling as PIL's default) and decodes them again."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    out = []
    for image in images:
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(_from_pil(decoded, images))
    return torch.stack(out)


def downscale(images: Tensor, factor: float = 0.5) -> Tensor:
    r"""Resizes ``(B, 3, H, W)`` images by ``factor`` with PIL's bicubic filter
    (antialiased, as image hosts and scrapers resize), through 8-bit pixels."""
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    height, width = images.shape[-2:]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    out = [
        _from_pil(_to_pil(image).resize(size, Image.BICUBIC), images)
        for image in images
    ]
    return torch.stack(out)


def scraper_transforms() -> Dict[str, Callable[[Tensor], Tensor]]:
    r"""What a scraper's pipeline does to an image, by name.

    ``jpeg75`` and ``jpeg90`` re-encode as JPEG at those qualities; ``down2``
    halves both sides. Each maps ``(B, 3, H, W)`` in [0, 1] to images in [0, 1]
    (quantised to 8 bits, as any saved image is).
    """
    return {
        "jpeg75": lambda x: jpeg_reencode(x, 75),
        "jpeg90": lambda x: jpeg_reencode(x, 90),
        "down2": lambda x: downscale(x, 0.5),
    }


# --------------------------------------------------------------------------- pipeline


def _pil_to_tensor(image: Image.Image, image_size: Optional[int]) -> Tensor:
    image = image.convert("RGB")
    if image_size is not None and image.size != (image_size, image_size):
        # The paper resizes evaluation images to a square (Flickr8k at 256×256).
        image = image.resize((image_size, image_size), Image.BICUBIC)
    return _from_pil(image, torch.empty(0))


@torch.no_grad()
def codec_roundtrip(model: nn.Module, x: Tensor) -> Dict[str, Any]:
    r"""Compresses a batch once and decodes it to the full and protected images.

    The batch is padded to ``model.downsampling_factor`` for coding and the
    decodes are cropped back. Call ``model.update(force=True)`` first (and, for
    mbt2018 / cheng2020, run one forward pass).

    Returns:
        ``{"full": (B, 3, H, W), "protected": (B, 3, H, W), "bpp": [per image]}``
        with bpp from the real byte count of each image's strings
    """
    height, width = x.shape[-2:]
    x_padded, padding = pad_to_multiple(x, int(model.downsampling_factor))
    encoded = model.compress(x_padded)
    strings = encoded["strings"]
    decoded = model.decompress_multi(
        strings, encoded["shape"], conditions=("full", "protected")
    )
    full, protected = (
        crop_padding(x_hat, padding).clamp(0, 1) for x_hat in decoded["x_hat"]
    )
    num_bytes = [sum(len(latent[i]) for latent in strings) for i in range(x.size(0))]
    return {
        "full": full,
        "protected": protected,
        "bpp": [8.0 * b / (height * width) for b in num_bytes],
    }


def _psnr(a: Tensor, b: Tensor) -> List[float]:
    # On 8-bit values, as CompressAI's eval_model measures it.
    a8 = a.clamp(0, 1).mul(255).round()
    b8 = b.clamp(0, 1).mul(255).round()
    mse = (a8 - b8).pow(2).flatten(1).mean(1)
    return [
        float("inf") if m == 0 else 10.0 * math.log10(255.0**2 / m)
        for m in mse.tolist()
    ]


def _mean(values: Sequence[float]) -> Optional[float]:
    finite = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    return sum(finite) / len(finite) if finite else None


def evaluate_privacy(
    model: nn.Module,
    dataset: Any,
    vlp: Union[VLPAdapter, VLPEnsemble],
    ks: Sequence[int] = DEFAULT_KS,
    image_size: Optional[int] = None,
    limit: Optional[int] = None,
    batch_size: int = 8,
    transforms: Optional[Mapping[str, Callable[[Tensor], Tensor]]] = None,
    robust_full: bool = True,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    r"""Retrieval privacy of a shielded codec against a VLP, over a caption dataset.

    Every image is compressed once (padded to ``model.downsampling_factor``) and
    decoded to the full and the protected image (one entropy decode, cropped
    back). The VLP embeds the original, full and protected images, the protected
    images after each scraper transform (and, with ``robust_full``, the full
    images after the same transforms, to tell what the transform alone costs),
    and every caption.

    Args:
        model: a shielded CompressAI model (``model.update(force=True)`` is run
            here)
        dataset: ``len(dataset)``, ``dataset.load_image(i)`` (a PIL image) and
            ``dataset.image_captions_at(i)`` (its captions)
        vlp: the attacker's VLP or an ensemble (similarities are averaged with
            the ensemble's weights)
        ks: Recall@K cut-offs
        image_size: resize every image to this square size first (the paper
            evaluates Flickr8k at 256); ``None`` keeps native sizes
        limit: evaluate only the first ``limit`` images
        batch_size: images per codec call when their sizes agree
        transforms: robustness variants (default :func:`scraper_transforms`;
            ``{}`` for none)
        robust_full: also transform the full decodes
        device: where the codec runs (default: where its parameters are)
        progress: show a tqdm bar

    Returns:
        a JSON-serialisable dict: ``num_images``, ``num_captions``, ``ks``,
        ``vlp``, ``bpp`` (mean, from the real byte count of the strings),
        ``psnr`` (mean dB of ``full`` and ``protected`` against the original),
        ``recall`` (``{variant: {"i2t": {"R@1": ...}, "t2i": {...}}}``), ``asr``
        (``{protected variant: {"vs_full" | "vs_original": {direction:
        {"R@k": share}}}}``, over all queries) and ``asr_relative`` (the same,
        over the reference's hits)
    """
    from tqdm import tqdm

    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    if total < 1:
        raise ValueError("The dataset has no images to evaluate")
    transforms = scraper_transforms() if transforms is None else dict(transforms)
    if device is None:
        device = next(model.parameters()).device
    model = model.eval()
    with torch.no_grad():
        # mbt2018 and cheng2020 mask their context convolution in place during
        # the first forward pass; coding before it would use unmasked weights.
        factor = int(model.downsampling_factor)
        model(torch.zeros(1, 3, factor, factor, device=device))
    model.update(force=True)
    weights = [w for _, w in vlp_members(vlp)]

    captions: List[str] = []
    image_to_captions: List[List[int]] = []
    embeddings: Dict[str, List[Embeddings]] = {}
    bpp: List[float] = []
    psnr: Dict[str, List[float]] = {"full": [], "protected": []}

    def add(name: str, images: Union[Tensor, List[Tensor]]) -> None:
        embeddings.setdefault(name, []).append(embed_images(vlp, images, batch_size))

    bar = tqdm(total=total, desc="privacy eval", unit="img", disable=not progress)
    start = 0
    while start < total:
        indices = list(range(start, min(start + batch_size, total)))
        start += len(indices)
        originals = []
        for i in indices:
            originals.append(_pil_to_tensor(dataset.load_image(i), image_size))
            own = list(dataset.image_captions_at(i))
            image_to_captions.append(
                list(range(len(captions), len(captions) + len(own)))
            )
            captions.extend(own)
        # Same-size images share one codec call; others go one by one.
        if len({tuple(o.shape) for o in originals}) == 1:
            groups = [torch.stack(originals)]
        else:
            groups = [o[None] for o in originals]
        variants: Dict[str, List[Tensor]] = {
            "original": [],
            "full": [],
            "protected": [],
        }
        for group in groups:
            out = codec_roundtrip(model, group.to(device))
            bpp.extend(out["bpp"])
            psnr["full"].extend(_psnr(out["full"].cpu(), group))
            psnr["protected"].extend(_psnr(out["protected"].cpu(), group))
            decoded = {
                "original": group,
                "full": out["full"].cpu(),
                "protected": out["protected"].cpu(),
            }
            for name, images in decoded.items():
                variants[name].extend(images)
            for tname, transform in transforms.items():
                targets = ("protected", "full") if robust_full else ("protected",)
                for source in targets:
                    variants.setdefault(f"{source}_{tname}", []).extend(
                        transform(decoded[source])
                    )
        for name, images in variants.items():
            add(name, images)
        bar.update(len(indices))
    bar.close()

    text_emb = embed_texts(vlp, captions)
    hits: Dict[str, Dict[str, Dict[int, Tensor]]] = {}
    for name, parts in embeddings.items():
        if isinstance(parts[0], Tensor):
            image_emb: Embeddings = torch.cat(parts)
        else:
            image_emb = [torch.cat([p[m] for p in parts]) for m in range(len(parts[0]))]
        sim = similarity(image_emb, text_emb, weights)
        hits[name] = retrieval_hits(sim, image_to_captions, ks)

    protected_variants = ["protected"] + [f"protected_{t}" for t in transforms]
    asr: Dict[str, Any] = {}
    asr_relative: Dict[str, Any] = {}
    for variant in protected_variants:
        for target, relative in ((asr, False), (asr_relative, True)):
            target[variant] = {
                f"vs_{reference}": {
                    direction: {
                        f"R@{k}": attack_success_rate(
                            hits[reference][direction][k],
                            hits[variant][direction][k],
                            relative=relative,
                        )
                        for k in hits[variant][direction]
                    }
                    for direction in DIRECTIONS
                }
                for reference in ("full", "original")
            }
    return {
        "num_images": total,
        "num_captions": len(captions),
        "ks": [int(k) for k in ks],
        "image_size": image_size,
        "vlp": getattr(vlp, "name", type(vlp).__name__),
        "transforms": list(transforms),
        "bpp": _mean(bpp),
        "psnr": {name: _mean(values) for name, values in psnr.items()},
        "recall": {name: recall_from_hits(h) for name, h in hits.items()},
        "asr": asr,
        "asr_relative": asr_relative,
    }
