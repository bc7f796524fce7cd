r"""Loading and saving images as tensors, safely.

:func:`load_image` turns any common image file into a ``(1, 3, H, W)`` float tensor
in ``[0, 1]``, the input of CompressAI models and of the PSIC codec:

- RGB, grayscale (``1``, ``L``), palette (``P``), ``CMYK`` and ``YCbCr`` images are
  converted to RGB;
- alpha channels (``RGBA``, ``LA``, ``PA``, palette transparency) are dropped with a
  warning, since the codec has no alpha channel;
- 16-bit grayscale (``I;16`` PNG and TIFF) and 32-bit integer (``I``) images are
  scaled by 1/65535; float (``F``) images are taken as values in [0, 1];
- the EXIF orientation is applied, so the tensor is upright as viewers show it;
- Pillow's decompression-bomb limit stays in force (``Image.MAX_IMAGE_PIXELS`` is
  never changed): larger images raise :class:`ImageLoadError`, including those
  between one and two times the limit, for which Pillow only warns;
- non-finite pixels (NaN or infinity in float TIFFs) raise :class:`ImageLoadError`:
  they would make CompressAI's entropy encoder loop forever.

numpy, torch and Pillow are imported on first use, so that importing this module
(for :data:`IMAGE_EXTENSIONS` or :class:`ImageLoadError`) costs nothing.

:func:`save_image` writes a tensor as an 8-bit image (PNG unless the suffix names
another format).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Tuple, Union

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "ImageLoadError",
    "is_image_file",
    "load_image",
    "pil_to_tensor",
    "probe_image",
    "save_image",
    "tensor_to_pil",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Pillow formats :func:`load_image` opens. Limiting the decoders that untrusted
#: files can reach keeps rarely used (and rarely audited) plugins out of the way.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "PPM")

#: File suffixes taken as images when a folder is compressed.
IMAGE_EXTENSIONS = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".webp",
        ".tif",
        ".tiff",
        ".bmp",
        ".gif",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    }
)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


class ImageLoadError(ValueError):
    """An image file cannot be read (unknown format, corrupt, too large, ...)."""


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` is a file whose suffix is one of :data:`IMAGE_EXTENSIONS`."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: PathLike, formats: Sequence[str] = IMAGE_FORMATS) -> Tensor:
    """Reads an image file as a ``(1, 3, H, W)`` float32 tensor in ``[0, 1]``.

    Args:
        path: image file.
        formats: Pillow format names allowed (default :data:`IMAGE_FORMATS`).

    Raises:
        ImageLoadError: when the file is not an image of an allowed format, is
            corrupt or truncated, has more pixels than Pillow's
            ``Image.MAX_IMAGE_PIXELS``, holds non-finite values, or has a pixel
            mode that cannot be converted to RGB.
        OSError: when the file cannot be opened (missing, unreadable).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    # Open the file ourselves so that a missing file stays a FileNotFoundError
    # instead of a decoding error.
    with open(path, "rb") as f:
        try:
            with warnings.catch_warnings():
                # Pillow only warns between one and two times its limit; such an
                # image would then cost gigabytes to encode.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image_file = Image.open(f, formats=list(formats))
            with image_file as image:
                if getattr(image, "n_frames", 1) > 1:
                    warnings.warn(
                        f"{path}: {image.n_frames} frames, only the first is used",
                        stacklevel=2,
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                return pil_to_tensor(image, name=str(path))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(
                f"{path}: refused, the image is too large ({exc})"
            ) from None
        except UnidentifiedImageError:
            raise ImageLoadError(
                f"{path}: not an image file of a supported format "
                f"(allowed: {', '.join(formats)})"
            ) from None
        except (OSError, SyntaxError, struct.error, ValueError) as exc:
            if isinstance(exc, ImageLoadError):
                raise
            # Pillow reports corrupt and truncated data with these exceptions.
            raise ImageLoadError(f"{path}: cannot decode the image ({exc})") from None


def probe_image(
    path: PathLike, formats: Sequence[str] = IMAGE_FORMATS
) -> Tuple[int, int]:
    """Checks that ``path`` is an image :func:`load_image` can read, from its
    header only (no pixels decoded, no torch); returns ``(width, height)``.

    Raises:
        ImageLoadError: not an image of an allowed format, or over Pillow's
            pixel limit.
        OSError: when the file cannot be opened (missing, unreadable).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    with open(path, "rb") as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f, formats=list(formats)) as image:
                    return image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(
                f"{path}: refused, the image is too large ({exc})"
            ) from None
        except UnidentifiedImageError:
            raise ImageLoadError(
                f"{path}: not an image file of a supported format "
                f"(allowed: {', '.join(formats)})"
            ) from None
        except (OSError, SyntaxError, struct.error, ValueError) as exc:
            raise ImageLoadError(f"{path}: cannot decode the image ({exc})") from None


def pil_to_tensor(image: Image.Image, name: str = "image") -> Tensor:
    """Converts a Pillow image of any supported mode to ``(1, 3, H, W)`` in [0, 1].

    Raises:
        ImageLoadError: for a pixel mode that cannot be converted to RGB, and for
            non-finite values (NaN or infinity, possible in float images).
    """
    import numpy as np
    import torch

    mode = image.mode
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        warnings.warn(
            f"{name}: alpha channel dropped (mode {mode}); the codec encodes colour "
            "only",
            stacklevel=3,
        )
        if mode == "La":
            # Pillow converts premultiplied gray+alpha only to LA.
            image = image.convert("LA")
        image = image.convert("RGB")
        mode = image.mode

    if mode in _HIGH_BIT_DEPTH_MODES:
        array = np.asarray(image).astype(np.float32) / 65535.0
        array = np.clip(array, 0.0, 1.0)
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif mode == "F":
        array = np.asarray(image, dtype=np.float32)
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ImageLoadError(
                f"{name}: {bad} pixels are NaN or infinite; the codec needs finite "
                "values"
            )
        array = np.clip(array, 0.0, 1.0)
        array = np.repeat(array[:, :, None], 3, axis=2)
    else:
        if mode != "RGB":
            try:
                image = image.convert("RGB")
            except ValueError as exc:
                raise ImageLoadError(
                    f"{name}: unsupported pixel mode {mode} ({exc})"
                ) from None
        array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return tensor.permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(tensor: Tensor) -> Image.Image:
    """Converts a ``(1, 3, H, W)`` or ``(3, H, W)`` tensor in [0, 1] to an RGB image.

    Values are clamped to [0, 1] and rounded to 8 bits.
    """
    import numpy as np
    import torch
    from PIL import Image

    if tensor.dim() == 4:
        if tensor.size(0) != 1:
            raise ValueError(
                f"expected one image, got a batch of {tensor.size(0)}; save each "
                "image on its own"
            )
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.size(0) != 3:
        raise ValueError(
            f"expected a (1, 3, H, W) or (3, H, W) tensor, got {tuple(tensor.shape)}"
        )
    array = (
        tensor.detach()
        .to("cpu", torch.float32)
        .clamp(0.0, 1.0)
        .mul(255.0)
        .round()
        .to(torch.uint8)
        .permute(1, 2, 0)
        .numpy()
    )
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def save_image(tensor: Tensor, path: PathLike, **save_kwargs) -> None:
    """Writes a ``(1, 3, H, W)`` or ``(3, H, W)`` tensor in [0, 1] as an 8-bit image.

    The format follows the suffix of ``path`` (PNG for ``.png``); ``save_kwargs``
    go to :meth:`PIL.Image.Image.save` (e.g. ``quality=95`` for JPEG).
    """
    tensor_to_pil(tensor).save(Path(path), **save_kwargs)
