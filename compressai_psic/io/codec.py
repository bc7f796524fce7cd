r"""Images to ``.psic`` files and back, through a shielded model.

:func:`compress_tensor` encodes an image with ``model.compress`` and returns the
:class:`~compressai_psic.io.container.PSICFile` that ``psic compress`` writes;
:func:`decompress_header` decodes one to the protected and/or full image, after
:mod:`compressai_psic.models.guard` has checked the file against the model.
:class:`ModelSpec` names the model, as the header stores it.

torch is imported when an image is coded, not with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence

from ..errors import CLIError, KeyRequiredError, PSICFormatError, one_line
from ..options import MAX_DECODE_PIXELS
from .container import PSICFile

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = [
    "ModelSpec",
    "compress_tensor",
    "decompress_header",
    "header_from_compressed",
]


@dataclass(frozen=True)
class ModelSpec:
    """Identity of a model, as stored in a ``.psic`` header.

    Exactly one source: a zoo model (``quality`` and ``metric``; with ``seed`` for
    random weights) or a checkpoint file (``checkpoint`` path, whose sha256 is the
    identity).
    """

    architecture: str | None
    quality: int | None = None
    metric: str | None = None
    seed: int | None = None
    checkpoint: Path | None = None

    @property
    def random_init(self) -> bool:
        return self.seed is not None


def header_from_compressed(
    out: Mapping[str, Any],
    height: int,
    width: int,
    architecture: str,
    quality: Optional[int] = None,
    metric: Optional[str] = None,
    checkpoint_sha256: Optional[str] = None,
    seed: Optional[int] = None,
) -> PSICFile:
    """The :class:`PSICFile` of ``out = model.compress(x)`` for an image of
    ``height`` × ``width`` pixels (before padding), written by the model named by
    the other arguments. A shielded model's ``out`` also gives the symbol digest
    and the portable flag."""
    return PSICFile(
        architecture=architecture,
        quality=quality,
        metric=metric,
        checkpoint_sha256=checkpoint_sha256,
        height=int(height),
        width=int(width),
        shape=tuple(int(d) for d in out["shape"]),
        strings=[[bytes(s) for s in latent] for latent in out["strings"]],
        seed=seed,
        symbols_digest=out.get("symbols_digest"),
        portable=bool(out.get("portable", False)),
    )


def compress_tensor(
    model: torch.nn.Module,
    x: Tensor,
    spec: ModelSpec,
    checkpoint_sha256: str | None = None,
    portable: bool = False,
) -> PSICFile:
    """Encodes a ``(1, 3, H, W)`` image in [0, 1] into a :class:`PSICFile`.

    The image is padded to a multiple of ``model.downsampling_factor`` (the
    decoder crops back to the size in the header). The file carries the CRC-32
    of the coded symbols, which :func:`decompress_header` checks; ``portable``
    computes the entropy parameters in integer arithmetic, so that any machine
    decodes the file (:mod:`compressai_psic.models.portable`).

    Raises:
        ValueError: when ``x`` holds NaN, infinity or values outside [0, 1]
            (CompressAI's encoder would loop forever on them; a shielded
            model's ``compress`` refuses them), or for ``portable`` on a model
            without it.
    """
    import torch

    from ..padding import pad_to_multiple

    height, width = x.shape[-2:]
    x_padded, _ = pad_to_multiple(x, int(model.downsampling_factor))
    options = {"portable": True} if portable else {}
    with torch.no_grad():
        out = model.compress(x_padded, **options)
    zoo_model = spec.checkpoint is None
    return header_from_compressed(
        out,
        height,
        width,
        architecture=getattr(model, "architecture", None) or spec.architecture,
        quality=spec.quality if zoo_model else None,
        metric=spec.metric if zoo_model else None,
        checkpoint_sha256=checkpoint_sha256,
        seed=spec.seed,
    )


def decompress_header(
    model: torch.nn.Module,
    header: PSICFile,
    conditions: Sequence[str],
    max_pixels: Optional[int] = MAX_DECODE_PIXELS,
    key: Optional[Any] = None,
) -> List[Tensor]:
    """Decodes a :class:`PSICFile` to one image per condition, cropped to size.

    ``key`` is the publisher's :class:`~compressai_psic.models.keys.ShieldKey`
    for a keyed model's protected decode (it is never part of the file).

    The header is validated against the model and its declared image size first
    (:func:`compressai_psic.models.guard.validate_decode_inputs`); the shielded
    model's ``decompress`` then decodes the strings without reading past them
    and refuses a non-finite decode itself, so any file decodes within time and
    memory proportional to its declared size, or is refused. ``max_pixels``
    bounds that size (the default is
    :data:`compressai_psic.options.MAX_DECODE_PIXELS`; ``None``: no limit).
    The decoded symbols are checked against the header's digest before an
    image is returned (files of format version 1 have none: only the bounded
    rANS decoder's end-of-string check applies,
    :mod:`~compressai_psic.models.rans`); a portable file is decoded with the
    integer hyper-synthesis.

    Raises:
        PSICFormatError: (:class:`~compressai_psic.errors.BitstreamError`,
            :class:`~compressai_psic.errors.PixelLimitError`,
            :class:`~compressai_psic.errors.DesyncError`) when the strings or
            the shape do not fit the model, the size is over the pixel limit,
            the decoded symbols are not the encoder's, or the decode is not
            finite.
        CLIError: when the model fails to decode the strings.
    """
    import torch

    from ..models import guard
    from ..padding import crop_padding

    # The stricter check a file allows (its latents must be exactly those of the
    # declared size); padding and the finite check happen once, in the model.
    guard.validate_decode_inputs(
        model,
        header.strings,
        header.shape,
        max_pixels,
        image_size=(header.height, header.width),
    )
    strings = header.strings
    checks = {"symbols_digest": header.symbols_digest}
    if header.portable:
        checks["portable"] = True
    if key is not None:  # plain models take no key=
        checks["key"] = key
    try:
        with torch.no_grad():
            if len(conditions) == 1:
                images = [
                    model.decompress(
                        strings,
                        header.shape,
                        condition=conditions[0],
                        max_pixels=max_pixels,
                        **checks,
                    )["x_hat"]
                ]
            else:
                images = model.decompress_multi(
                    strings,
                    header.shape,
                    conditions=tuple(conditions),
                    max_pixels=max_pixels,
                    **checks,
                )["x_hat"]
    except MemoryError:
        raise CLIError(
            f"out of memory decoding a {header.width}x{header.height} image; lower "
            "the pixel limit (max_pixels, --max-pixels) to refuse such files"
        ) from None
    except (RuntimeError, ValueError, IndexError) as exc:
        if isinstance(exc, (PSICFormatError, KeyRequiredError)):
            raise
        raise CLIError(f"cannot decode the bitstream: {one_line(exc)}") from None
    cropped = []
    for x_hat in images:
        padded_h, padded_w = x_hat.shape[-2:]
        if padded_h < header.height or padded_w < header.width:
            raise CLIError(
                f"corrupted file: decoded {padded_w}x{padded_h}, smaller than the "
                f"declared {header.width}x{header.height}"
            )
        padding = (0, padded_w - header.width, 0, padded_h - header.height)
        cropped.append(crop_padding(x_hat, padding))
    return cropped
