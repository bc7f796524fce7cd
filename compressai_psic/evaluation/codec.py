r"""One codec round trip per batch, and the quality of its decodes.

:func:`codec_roundtrip` compresses a batch once and decodes it to the full and
the protected image, with the rate from real bytes; :func:`codec_batches` does
it over a caption dataset. PSNR and MS-SSIM are measured per image on 8-bit
values, as CompressAI's ``eval_model`` does.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from PIL import Image
from torch import Tensor

from ..io.images import pil_to_tensor
from ..padding import crop_padding, pad_to_multiple

__all__ = [
    "codec_batches",
    "codec_roundtrip",
    "finite_mean",
    "ms_ssim_8bit",
    "ms_ssim_window",
    "prepare_codec",
    "psnr_8bit",
]


def _pil_to_tensor(image: Image.Image, image_size: Optional[int]) -> Tensor:
    image = image.convert("RGB")
    if image_size is not None and image.size != (image_size, image_size):
        # The paper resizes evaluation images to a square (Flickr8k at 256×256).
        image = image.resize((image_size, image_size), Image.BICUBIC)
    return pil_to_tensor(image)[0]


@torch.no_grad()
def codec_roundtrip(model: nn.Module, x: Tensor, key: Any = None) -> Dict[str, Any]:
    r"""Compresses a batch once and decodes it to the full and protected images.

    ``key``: the publisher's key of a keyed model
    (:class:`~compressai_psic.models.keys.ShieldKey`), or a function of no
    argument that returns one per call (an attacker's fresh keys).

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
    if callable(key):
        key = key()
    keyed = {} if key is None else {"key": key}
    decoded = model.decompress_multi(
        strings, encoded["shape"], conditions=("full", "protected"), **keyed
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


def psnr_8bit(a: Tensor, b: Tensor) -> List[float]:
    """PSNR (dB) of each image of ``a`` against ``b``, on 8-bit values, as
    CompressAI's eval_model measures it."""
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


def ms_ssim_8bit(a: Tensor, b: Tensor) -> Tuple[List[float], Optional[int]]:
    """MS-SSIM of each image of ``a`` against ``b`` on 8-bit values, and the
    window used (see :func:`ms_ssim_window`); NaN and ``None`` for tiny images."""
    from pytorch_msssim import ms_ssim

    window = ms_ssim_window(min(a.shape[-2:]))
    if window is None:
        return [float("nan")] * a.size(0), None
    a8 = a.clamp(0, 1).mul(255).round().float()
    b8 = b.clamp(0, 1).mul(255).round().float()
    values = ms_ssim(a8, b8, data_range=255.0, size_average=False, win_size=window)
    return [float(v) for v in values], window


def finite_mean(values: Sequence[float]) -> Optional[float]:
    """Mean of the finite values; ``None`` when there is none."""
    finite = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    return sum(finite) / len(finite) if finite else None


def prepare_codec(model: nn.Module, device: Union[str, torch.device]) -> nn.Module:
    """Eval mode, one forward pass and fresh CDF tables, ready to code."""
    model = model.eval()
    with torch.no_grad():
        # mbt2018 and cheng2020 mask their context convolution in place during
        # the first forward pass; coding before it would use unmasked weights.
        factor = int(model.downsampling_factor)
        model(torch.zeros(1, 3, factor, factor, device=device))
    model.update(force=True)
    return model


def codec_batches(
    model: nn.Module,
    dataset: Any,
    total: int,
    image_size: Optional[int],
    batch_size: int,
    device: Union[str, torch.device],
    key: Any = None,
) -> Iterator[Tuple[List[int], Tensor, Dict[str, Tensor], List[float]]]:
    r"""``(indices, originals, {"full", "protected"}, bpp)`` per codec call, on
    the CPU; images of one size share a call, others go one by one. ``key`` as
    in :func:`codec_roundtrip`."""
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
            out = codec_roundtrip(model, group.to(device), key)
            decoded = {"full": out["full"].cpu(), "protected": out["protected"].cpu()}
            yield group_indices, group, decoded, out["bpp"]
