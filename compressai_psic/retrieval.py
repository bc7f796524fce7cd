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
  scraper does to it (:mod:`compressai_psic.attacks`: JPEG at quality 75 and
  90, downscaling by ½, blind grey-world colour normalisation, and colour maps
  an informed attacker fits on a separate set of images it holds both ways);
- **image dependence** (:class:`DifferenceStats`): the share of the energy of
  protected − full that is common to all images (:func:`common_share`); a
  shield that adds the same pattern or colour cast to every image is undone
  by subtracting it.

The metric functions work on embeddings and similarity matrices only;
:func:`evaluate_shield` runs the whole evaluation of a shielded codec over a
caption dataset (any object with ``len``, ``load_image(i)`` and
``image_captions_at(i)``, e.g. :class:`~compressai_psic.datasets.Flickr8kCaptions`
or :class:`~compressai_psic.datasets.SceneCaptions`), against the VLPs the codec
was trained against and VLPs it was not, each reported separately with its role
(``"train"`` or ``"eval"``); :func:`evaluate_privacy` is its one-VLP form.

Ties: a query's rank counts every wrong candidate that scores *at least* as
high as its best right candidate, so a model that gives every candidate the same
score hits nothing (ties never count in the model's favour).
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .attacks import Attack, _from_pil, build_attacks, downscale, jpeg_reencode
from .utils import crop_padding, pad_to_multiple
from .vlp import VLPAdapter, VLPEnsemble, vlp_members

__all__ = [
    "DEFAULT_KS",
    "DIRECTIONS",
    "ROBUSTNESS_VARIANTS",
    "ROLES",
    "DatasetSlice",
    "DifferenceStats",
    "attack_success_rate",
    "caption_owners",
    "chance_recall",
    "codec_roundtrip",
    "common_share",
    "downscale",
    "embed_images",
    "embed_texts",
    "evaluate_privacy",
    "evaluate_shield",
    "jpeg_reencode",
    "ms_ssim_window",
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


def ms_ssim_window(side: int) -> Optional[int]:
    r"""Gaussian window of MS-SSIM for images whose shorter side is ``side``.

    The standard 11 when ``pytorch_msssim`` accepts it (shorter side > 160);
    otherwise the largest odd window that five scales leave room for (3 for
    64-pixel images), ``None`` below 33 pixels. Figures with different windows
    are not comparable; reports say which window they used.
    """
    if side > 160:
        return 11
    window = (side - 1) // 16 + 1
    window -= 1 - window % 2
    return window if window >= 3 else None


def _ms_ssim(a: Tensor, b: Tensor) -> Tuple[List[float], Optional[int]]:
    from pytorch_msssim import ms_ssim

    window = ms_ssim_window(min(a.shape[-2:]))
    if window is None:
        return [float("nan")] * a.size(0), None
    a8 = a.clamp(0, 1).mul(255).round().float()
    b8 = b.clamp(0, 1).mul(255).round().float()
    values = ms_ssim(a8, b8, data_range=255.0, size_average=False, win_size=window)
    return [float(v) for v in values], window


def _mean(values: Sequence[float]) -> Optional[float]:
    finite = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    return sum(finite) / len(finite) if finite else None


# ------------------------------------------------------------ image dependence


def common_share(differences: Tensor) -> Optional[float]:
    r"""Share of the energy of per-image differences that all images share.

    With ``D_i`` the ``N`` differences (e.g. protected − full decode),
    ``N · ‖mean_i D_i‖² / Σ_i ‖D_i‖²``, pixelwise: 1 when every image gets the
    same change (a fixed pattern or colour cast), about ``1/N`` for independent
    changes, 0 for changes that cancel out over the set; ``None`` when every
    difference is zero.

    Args:
        differences: ``(N, ...)``, one difference per image
    """
    stats = DifferenceStats()
    stats.update(differences)
    return stats.result()["common_share"]


class DifferenceStats:
    r"""Streaming statistics of per-image differences ``D_i`` (protected − full).

    :meth:`result` gives

    - ``common_share``: :func:`common_share` (``None`` when the images differ
      in size);
    - ``per_image_dc_share``: the share of the energy in each image's own
      constant RGB shift (its per-channel mean);
    - ``global_offset_share``: the share in one RGB shift common to all
      images (the mean of ``D`` per channel over all pixels); a colour cast
      that a 3-number correction undoes has this near 1;
    - ``mean_offset_rgb``: that shift; ``rms``: the root mean square of ``D``.
    """

    def __init__(self) -> None:
        self.count = 0
        self.pixels = 0
        self.energy = 0.0
        self.dc_energy = 0.0
        self.channel_sum = torch.zeros(3, dtype=torch.float64)
        self.sum: Optional[Tensor] = None
        self.same_size = True

    def update(self, differences: Tensor, full: Optional[Tensor] = None) -> None:
        """Adds ``(B, C, H, W)`` differences, or ``differences − full`` when
        ``full`` is given."""
        d = differences.detach().double().cpu()
        if full is not None:
            d = d - full.detach().double().cpu()
        if d.dim() < 2:
            raise ValueError("Expected one difference per row (N, ...)")
        d4 = d if d.dim() == 4 else d.reshape(d.size(0), 1, 1, -1)
        self.count += d.size(0)
        self.energy += float(d.pow(2).sum())
        area = d4.shape[-1] * d4.shape[-2]
        self.dc_energy += float(d4.mean(dim=(2, 3)).pow(2).sum() * area)
        if d4.size(1) == 3:
            self.channel_sum += d4.sum(dim=(0, 2, 3))
        self.pixels += d4.size(0) * area
        if self.same_size:
            if self.sum is None:
                self.sum = d.sum(0)
            elif self.sum.shape == d.shape[1:]:
                self.sum += d.sum(0)
            else:
                self.same_size, self.sum = False, None

    def result(self) -> Dict[str, Any]:
        if self.count == 0:
            raise ValueError("No differences were added")
        energy = self.energy
        # Shares of nothing are undefined (protected == full): None.
        common = None
        if self.sum is not None and energy:
            common = float(self.sum.pow(2).sum()) / self.count / energy
        offset = (self.channel_sum / self.pixels).tolist() if self.pixels else None
        global_share = None
        if offset is not None and energy:
            global_share = self.pixels * sum(v * v for v in offset) / energy
        size = self.count * (self.sum.numel() if self.sum is not None else 0)
        return {
            "num_images": self.count,
            "common_share": common,
            "per_image_dc_share": self.dc_energy / energy if energy else None,
            "global_offset_share": global_share,
            "mean_offset_rgb": offset,
            "rms": math.sqrt(energy / size) if size else None,
        }


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


# -------------------------------------------------------------------- datasets


class DatasetSlice:
    r"""Images ``start .. stop − 1`` of a caption dataset, as a dataset.

    Takes an attacker's fit set from the same collection as the evaluation
    images without sharing any (e.g. the images after the evaluated ones).
    """

    def __init__(self, dataset: Any, start: int, stop: Optional[int] = None):
        stop = len(dataset) if stop is None else min(int(stop), len(dataset))
        if not 0 <= start <= stop:
            raise ValueError(f"Invalid slice {start}:{stop} of {len(dataset)} images")
        self.dataset, self.start, self.stop = dataset, int(start), stop

    def __len__(self) -> int:
        return self.stop - self.start

    def _index(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.start + i

    def load_image(self, i: int) -> Image.Image:
        return self.dataset.load_image(self._index(i))

    def image_captions_at(self, i: int) -> List[str]:
        return self.dataset.image_captions_at(self._index(i))


def _image_key(image: Tensor) -> str:
    data = image.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return hashlib.sha1(repr(data.shape).encode() + data.tobytes()).hexdigest()


# -------------------------------------------------------------------- pipeline

VLPLike = Union[str, VLPAdapter, VLPEnsemble]
ROLES = ("train", "eval")


def _vlp_entries(
    train_vlps: Union[None, VLPLike, Sequence[VLPLike]],
    eval_vlps: Union[None, VLPLike, Sequence[VLPLike]],
    device: Union[str, torch.device, None],
) -> List[Dict[str, Any]]:
    from .vlp import build_vlp

    entries = []
    for role, vlps in zip(ROLES, (train_vlps, eval_vlps)):
        if vlps is None:
            continue
        if isinstance(vlps, (str, VLPAdapter, VLPEnsemble)):
            vlps = [vlps]
        for vlp in vlps:
            spec = vlp if isinstance(vlp, str) else None
            if spec is not None:
                vlp = build_vlp(spec, device=device or "cpu")
            entries.append(
                {
                    "role": role,
                    "name": getattr(vlp, "name", type(vlp).__name__),
                    "spec": spec,
                    "vlp": vlp,
                }
            )
    if not entries:
        raise ValueError("Give at least one training or evaluation VLP")
    return entries


def _prepare_codec(model: nn.Module, device: Union[str, torch.device]) -> nn.Module:
    model = model.eval()
    with torch.no_grad():
        # mbt2018 and cheng2020 mask their context convolution in place during
        # the first forward pass; coding before it would use unmasked weights.
        factor = int(model.downsampling_factor)
        model(torch.zeros(1, 3, factor, factor, device=device))
    model.update(force=True)
    return model


def _codec_batches(
    model: nn.Module,
    dataset: Any,
    total: int,
    image_size: Optional[int],
    batch_size: int,
    device: Union[str, torch.device],
) -> Iterator[Tuple[List[int], Tensor, Dict[str, Tensor], List[float]]]:
    r"""``(indices, originals, {"full", "protected"}, bpp)`` per codec call, on
    the CPU; images of one size share a call, others go one by one."""
    start = 0
    while start < total:
        indices = list(range(start, min(start + batch_size, total)))
        start += len(indices)
        originals = [_pil_to_tensor(dataset.load_image(i), image_size) for i in indices]
        if len({tuple(o.shape) for o in originals}) == 1:
            groups = [(indices, torch.stack(originals))]
        else:
            groups = [([i], o[None]) for i, o in zip(indices, originals)]
        for group_indices, group in groups:
            out = codec_roundtrip(model, group.to(device))
            decoded = {"full": out["full"].cpu(), "protected": out["protected"].cpu()}
            yield group_indices, group, decoded, out["bpp"]


def _fit_attacks(
    attacks: Mapping[str, Mapping[str, Attack]],
    model: nn.Module,
    fit_dataset: Any,
    total: int,
    image_size: Optional[int],
    batch_size: int,
    device: Union[str, torch.device],
    progress: bool,
) -> set:
    """Fits every fitted attack of each source; returns the fit images' keys."""
    from tqdm import tqdm

    fitted = [
        (source, attack)
        for source, by_name in attacks.items()
        for attack in by_name.values()
        if attack.needs_fit
    ]
    for _, attack in fitted:
        attack.reset_fit()
    keys = set()
    bar = tqdm(total=total, desc="attack fit", unit="img", disable=not progress)
    for indices, originals, decoded, _ in _codec_batches(
        model, fit_dataset, total, image_size, batch_size, device
    ):
        keys.update(_image_key(o) for o in originals)
        for source, attack in fitted:
            attack.partial_fit(decoded[source], originals)
        bar.update(len(indices))
    bar.close()
    for _, attack in fitted:
        attack.finish_fit()
    return keys


def _stack_parts(parts: List[Embeddings]) -> Embeddings:
    if isinstance(parts[0], Tensor):
        return torch.cat(parts)
    return [torch.cat([p[m] for p in parts]) for m in range(len(parts[0]))]


def _asr_tables(
    hits: Mapping[str, Any], variants: Sequence[str], relative: bool
) -> Dict[str, Any]:
    return {
        variant: {
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
        for variant in variants
    }


def evaluate_shield(
    model: nn.Module,
    dataset: Any,
    train_vlps: Union[None, VLPLike, Sequence[VLPLike]],
    eval_vlps: Union[None, VLPLike, Sequence[VLPLike]] = None,
    attacks: Union[None, Sequence[Union[str, Attack]], Mapping[str, Any]] = None,
    fit_dataset: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    image_size: Optional[int] = None,
    limit: Optional[int] = None,
    fit_limit: Optional[int] = None,
    batch_size: int = 8,
    attack_full: bool = False,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    r"""Retrieval privacy of a shielded codec as an attacker would measure it.

    Every image is compressed once and decoded to the full and the protected
    image. Each attack (:mod:`compressai_psic.attacks`) post-processes the
    protected decodes (and, with ``attack_full``, the full decodes, to tell what
    the attack alone costs); fitted attacks are first fitted on the decodes and
    originals of ``fit_dataset``, which must share no image with ``dataset``.
    Then every VLP, separately, retrieves captions from images and images from
    captions for every variant.

    Args:
        model: a shielded CompressAI model (``model.update(force=True)`` is run
            here)
        dataset: ``len(dataset)``, ``dataset.load_image(i)`` (a PIL image) and
            ``dataset.image_captions_at(i)`` (its captions)
        train_vlps: the VLP(s) the codec was trained against: adapters,
            ensembles (one similarity, the weighted mean over members) or spec
            strings for :func:`~compressai_psic.vlp.build_vlp`
        eval_vlps: VLPs the codec was *not* trained against, same forms
        attacks: names (:func:`~compressai_psic.attacks.build_attack`),
            :class:`~compressai_psic.attacks.Attack` objects or ``{name:
            callable}``; default :data:`~compressai_psic.attacks.DEFAULT_ATTACKS`;
            ``[]`` for none
        fit_dataset: the attacker's fit set (needed by fitted attacks), same
            interface as ``dataset`` (captions unused)
        ks: Recall@K cut-offs
        image_size: resize every image (evaluated and fit) to this square size
            first; ``None`` keeps native sizes
        limit: evaluate only the first ``limit`` images
        fit_limit: fit on only the first ``fit_limit`` fit images
        batch_size: images per codec call when their sizes agree
        attack_full: also attack the full decodes (variants ``full_<attack>``)
        device: where the codec runs (default: where its parameters are); VLPs
            given as specs are built there
        progress: show tqdm bars

    Returns:
        a JSON-serialisable dict with ``num_images``, ``num_captions``, ``ks``,
        ``image_size``, ``chance`` (Recall@K of a random ranking), ``bpp``,
        ``psnr`` (mean dB against the originals of ``full``, ``protected`` and
        every same-size attacked variant), ``ms_ssim`` (``full`` and
        ``protected``; ``ms_ssim_window`` says which Gaussian window, see
        :func:`ms_ssim_window`), ``image_dependence``
        (:class:`DifferenceStats` of protected − full), ``attacks`` (names),
        ``attack_params`` (fitted values), ``fit`` (fit set size, or ``None``),
        and ``vlps``: one entry per VLP, training VLPs first, each with its
        ``role`` (``"train"`` or ``"eval"``), ``name``, ``spec``, ``recall``
        (``{variant: {"i2t": {"R@1": ...}, "t2i": {...}}}``), ``asr`` and
        ``asr_relative`` (``{protected variant: {"vs_full" | "vs_original":
        {direction: {"R@k": share}}}}``, over all queries and over the
        reference's hits). For older readers the first entry's figures are
        repeated at the top level (``vlp``, ``vlp_role``, ``recall``, ``asr``,
        ``asr_relative``) and ``transforms`` repeats ``attacks``.
    """
    from tqdm import tqdm

    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    if total < 1:
        raise ValueError("The dataset has no images to evaluate")
    if device is None:
        device = next(model.parameters()).device
    entries = _vlp_entries(train_vlps, eval_vlps, device)
    sources = ("protected", "full") if attack_full else ("protected",)
    by_source = {source: build_attacks(attacks) for source in sources}
    if attack_full:  # separate instances: the full decodes get their own fit
        by_source["full"] = {n: copy.deepcopy(a) for n, a in by_source["full"].items()}
    names = list(by_source["protected"])
    needs_fit = [n for n, a in by_source["protected"].items() if a.needs_fit]
    model = _prepare_codec(model, device)

    fit_info = None
    fit_keys: set = set()
    if needs_fit:
        if fit_dataset is None:
            raise ValueError(
                f"Attacks {needs_fit} are fitted on a separate set of images: "
                f"give fit_dataset (or leave them out)"
            )
        if fit_dataset is dataset:
            raise ValueError("fit_dataset must not be the evaluated dataset")
        fit_total = len(fit_dataset)
        if fit_limit is not None:
            fit_total = min(int(fit_limit), fit_total)
        if fit_total < 1:
            raise ValueError("The fit set has no images")
        fit_keys = _fit_attacks(
            by_source, model, fit_dataset, fit_total, image_size, batch_size,
            device, progress,
        )  # fmt: skip
        fit_info = {"num_images": fit_total, "attacks": needs_fit}

    captions: List[str] = []
    image_to_captions: List[List[int]] = []
    embeddings: List[Dict[str, List[Embeddings]]] = [{} for _ in entries]
    bpp: List[float] = []
    psnr: Dict[str, List[float]] = {"full": [], "protected": []}
    ms_ssim: Dict[str, List[float]] = {"full": [], "protected": []}
    windows = set()
    dependence = DifferenceStats()

    bar = tqdm(total=total, desc="privacy eval", unit="img", disable=not progress)
    for indices, originals, decoded, rates in _codec_batches(
        model, dataset, total, image_size, batch_size, device
    ):
        for i, original in zip(indices, originals):
            if fit_keys and _image_key(original) in fit_keys:
                raise ValueError(
                    f"Evaluated image {i} is also in the attacker's fit set; the "
                    "fit and evaluation sets must be disjoint"
                )
            own = list(dataset.image_captions_at(i))
            first = len(captions)
            image_to_captions.append(list(range(first, first + len(own))))
            captions.extend(own)
        bpp.extend(rates)
        dependence.update(decoded["protected"], decoded["full"])
        for source in ("full", "protected"):
            values, window = _ms_ssim(decoded[source], originals)
            ms_ssim[source].extend(values)
            windows.add(window)
        variants: Dict[str, Tensor] = {"original": originals, **decoded}
        for source in sources:
            for name, attack in by_source[source].items():
                variants[f"{source}_{name}"] = attack(decoded[source])
        for variant, images in variants.items():
            if variant != "original" and images.shape == originals.shape:
                psnr.setdefault(variant, []).extend(_psnr(images, originals))
            for store, entry in zip(embeddings, entries):
                store.setdefault(variant, []).append(
                    embed_images(entry["vlp"], images, max(batch_size, 32))
                )
        bar.update(len(indices))
    bar.close()

    protected_variants = ["protected"] + [f"protected_{n}" for n in names]
    vlp_reports = []
    for store, entry in zip(embeddings, entries):
        vlp = entry["vlp"]
        weights = [w for _, w in vlp_members(vlp)]
        text_emb = embed_texts(vlp, captions)
        hits = {
            variant: retrieval_hits(
                similarity(_stack_parts(parts), text_emb, weights),
                image_to_captions,
                ks,
            )
            for variant, parts in store.items()
        }
        vlp_reports.append(
            {
                "role": entry["role"],
                "name": entry["name"],
                "spec": entry["spec"],
                "recall": {v: recall_from_hits(h) for v, h in hits.items()},
                "asr": _asr_tables(hits, protected_variants, relative=False),
                "asr_relative": _asr_tables(hits, protected_variants, relative=True),
            }
        )

    # One window (the usual case), several (mixed sizes), or none (tiny images).
    window_list: Any = sorted(w for w in windows if w is not None) or None
    if window_list and len(window_list) == 1:
        window_list = window_list[0]
    primary = vlp_reports[0]
    return {
        "num_images": total,
        "num_captions": len(captions),
        "ks": [int(k) for k in ks],
        "image_size": image_size,
        "chance": chance_recall(image_to_captions, ks),
        "bpp": _mean(bpp),
        "psnr": {name: _mean(values) for name, values in psnr.items()},
        "ms_ssim": {name: _mean(values) for name, values in ms_ssim.items()},
        "ms_ssim_window": window_list,
        "image_dependence": dependence.result(),
        "attacks": names,
        "attack_sources": list(sources),
        "attack_params": {
            f"{source}_{name}": attack.describe()
            for source in sources
            for name, attack in by_source[source].items()
            if attack.needs_fit
        },
        "fit": fit_info,
        "vlps": vlp_reports,
        # The first VLP's figures, as evaluate_privacy reported them.
        "vlp": primary["name"],
        "vlp_role": primary["role"],
        "transforms": names,
        "recall": primary["recall"],
        "asr": primary["asr"],
        "asr_relative": primary["asr_relative"],
    }


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
    r"""Retrieval privacy against one VLP (or ensemble), blind transforms only.

    :func:`evaluate_shield` with ``vlp`` as the one training VLP, the
    ``transforms`` (default :func:`scraper_transforms`) as attacks on the
    protected decodes and, with ``robust_full``, on the full decodes.
    """
    return evaluate_shield(
        model,
        dataset,
        train_vlps=[vlp],
        attacks=scraper_transforms() if transforms is None else dict(transforms),
        ks=ks,
        image_size=image_size,
        limit=limit,
        batch_size=batch_size,
        attack_full=robust_full,
        device=device,
        progress=progress,
    )
