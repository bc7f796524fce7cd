r"""What every image–caption dataset shares: the sample interface, error handling,
image transforms and batching.

Every dataset returns ``(image, caption)`` with ``image`` a float tensor
``(3, H, W)`` in [0, 1], so one training loop handles all of them;
:func:`collate_captions` batches them for a :class:`~torch.utils.data.DataLoader`.
For retrieval evaluation each dataset also exposes ``captions`` (all captions of
every image, a list of lists) and :meth:`~CaptionDataset.load_image`.

Broken files never pass silently: a missing, truncated or undecodable image (or a
missing caption file) raises :class:`DatasetImageError` /
:class:`DatasetSampleError` naming the file. With ``on_error="skip"`` the sample is
replaced by the next readable one (in index order, so deterministically), a
warning names the file once, and ``skipped`` / ``skipped_paths`` count it; more
than ``max_consecutive_errors`` failures in a row raise. PIL's decompression-bomb
limit stays in force. With ``num_workers > 0`` the counters live in each worker
process.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from typing import Callable, List, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms

from ..options import CROP_MODES, ON_ERROR  # noqa: F401  (re-exported)

__all__ = [
    "CAPTION_MODES",
    "CROP_MODES",
    "ON_ERROR",
    "CaptionDataset",
    "DatasetImageError",
    "DatasetSampleError",
    "EnsureMinSize",
    "PathLike",
    "collate_captions",
    "image_transform",
    "load_rgb_image",
]

CAPTION_MODES = ("random", "first", "all")

PathLike = Union[str, "os.PathLike[str]"]

# What a broken or hostile image file can raise while PIL opens and decodes it.
_IMAGE_ERRORS = (
    OSError,  # missing, unreadable, truncated, unidentified (UnidentifiedImageError)
    ValueError,
    SyntaxError,  # some plugins signal malformed headers this way
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


class DatasetSampleError(OSError):
    """A sample cannot be read; ``path`` names the offending file."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetImageError(DatasetSampleError):
    """An image file is missing, not a regular file, truncated or undecodable."""


def _check_choice(what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"Invalid {what} {value!r}; allowed: {', '.join(allowed)}")


# --------------------------------------------------------------------------- files


def load_rgb_image(path: PathLike) -> Image.Image:
    """Opens and fully decodes an image as RGB.

    Raises:
        DatasetImageError: naming ``path`` when the file is missing, is not a
            regular file (a FIFO would block forever), or cannot be decoded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        reason = "not a regular file" if os.path.exists(path) else "file not found"
        raise DatasetImageError(f"Cannot read image {path}: {reason}", path)
    try:
        with Image.open(path) as image:
            # PIL decodes lazily; convert() decodes here, inside the try, so a
            # truncated file fails now, with its name, not later in a transform.
            return image.convert("RGB")
    except _IMAGE_ERRORS as err:
        raise DatasetImageError(
            f"Cannot read image {path}: {type(err).__name__}: {err}", path
        ) from err


# --------------------------------------------------------------------------- transforms


def _pair(patch_size) -> Tuple[int, int]:
    if isinstance(patch_size, int):
        patch_size = (patch_size, patch_size)
    height, width = (int(v) for v in patch_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"patch_size must be positive, got {patch_size}")
    return height, width


class EnsureMinSize:
    """Upscales (keeping the aspect ratio) an image smaller than ``(height, width)``
    so that a crop of that size fits; larger images pass unchanged."""

    def __init__(self, size: Tuple[int, int]):
        self.height, self.width = size
        self.warned = False

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width >= self.width and height >= self.height:
            return image
        if not self.warned:  # once per dataset (and data worker)
            self.warned = True
            warnings.warn(
                f"images smaller than the {self.height}x{self.width} patch are "
                f"upscaled to fit (first one: {width}x{height}); pass a smaller "
                "--patch-size to train at their own scale",
                stacklevel=2,
            )
        scale = max(self.width / width, self.height / height)
        new_size = (
            max(self.width, math.ceil(width * scale)),
            max(self.height, math.ceil(height * scale)),
        )
        return image.resize(new_size, Image.BICUBIC)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size=({self.height}, {self.width}))"


def image_transform(
    patch_size: Union[int, Tuple[int, int], None] = None, mode: str = "random_crop"
) -> Callable[[Image.Image], Tensor]:
    """PIL image → float tensor ``(3, H, W)`` in [0, 1] of ``patch_size``.

    Args:
        patch_size: output size (int or ``(height, width)``); ``None`` keeps the
            image size.
        mode: ``"random_crop"`` (training), ``"center_crop"`` (evaluation) or
            ``"resize"`` (whole image squeezed to the patch, as the paper does
            with 256×256 inputs). Images smaller than the patch are upscaled
            before cropping.
    """
    _check_choice("mode", mode, CROP_MODES)
    if patch_size is None:
        return transforms.ToTensor()
    size = _pair(patch_size)
    if mode == "resize":
        steps = [transforms.Resize(size)]
    elif mode == "random_crop":
        steps = [EnsureMinSize(size), transforms.RandomCrop(size)]
    else:
        steps = [EnsureMinSize(size), transforms.CenterCrop(size)]
    return transforms.Compose([*steps, transforms.ToTensor()])


# --------------------------------------------------------------------------- datasets


class CaptionDataset(Dataset):
    """Base of the image–caption datasets: caption choice and error handling.

    Subclasses implement :meth:`__len__`, :meth:`load_image` and
    :meth:`image_captions_at`.

    Args:
        transform: PIL image → tensor; default :func:`image_transform` of
            ``patch_size`` and ``mode``.
        patch_size, mode: see :func:`image_transform` (ignored with ``transform``).
        caption_mode: ``"random"`` (one caption drawn with torch's generator, so
            :func:`torch.manual_seed` and DataLoader worker seeding apply),
            ``"first"``, or ``"all"`` (the list of all captions of the image).
        on_error: ``"raise"`` or ``"skip"`` (see the module documentation).
        max_consecutive_errors: how many failing samples in a row ``"skip"``
            tolerates before raising.
    """

    def __init__(
        self,
        transform: Callable[[Image.Image], Tensor] | None = None,
        patch_size: Union[int, Tuple[int, int], None] = None,
        mode: str = "random_crop",
        caption_mode: str = "random",
        on_error: str = "raise",
        max_consecutive_errors: int = 16,
    ):
        _check_choice("caption_mode", caption_mode, CAPTION_MODES)
        _check_choice("on_error", on_error, ON_ERROR)
        if max_consecutive_errors < 1:
            raise ValueError(
                f"max_consecutive_errors must be positive, got {max_consecutive_errors}"
            )
        self.transform = (
            transform if transform is not None else image_transform(patch_size, mode)
        )
        self.caption_mode = caption_mode
        self.on_error = on_error
        self.max_consecutive_errors = int(max_consecutive_errors)
        #: Number of samples replaced because their files could not be read.
        self.skipped = 0
        #: Paths that could not be read, each listed once, in order of discovery.
        self.skipped_paths: List[str] = []

    def __len__(self) -> int:
        raise NotImplementedError

    def load_image(self, index: int) -> Image.Image:
        """The RGB image of sample ``index``, untransformed; raises on errors."""
        raise NotImplementedError

    def image_captions_at(self, index: int) -> List[str]:
        """All captions of sample ``index``; raises :class:`DatasetSampleError`."""
        raise NotImplementedError

    @property
    def captions(self) -> List[List[str]]:
        """All captions of every image, in index order (for retrieval)."""
        return [self.image_captions_at(i) for i in range(len(self))]

    def _choose_caption(self, captions: List[str]) -> Union[str, List[str]]:
        if self.caption_mode == "all":
            return list(captions)
        if self.caption_mode == "first" or len(captions) == 1:
            return captions[0]
        return captions[int(torch.randint(len(captions), ()))]

    def _record_skip(self, err: DatasetSampleError) -> None:
        self.skipped += 1
        path = err.path if err.path is not None else str(err)
        if path not in self.skipped_paths:
            self.skipped_paths.append(path)
            warnings.warn(f"Skipping unreadable sample: {err}", stacklevel=3)

    def __getitem__(self, index: int) -> Tuple[Tensor, Union[str, List[str]]]:
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"Index {index} out of range for {length} samples")
        index %= length
        last_error: DatasetSampleError | None = None
        for attempt in range(min(self.max_consecutive_errors, length)):
            current = (index + attempt) % length
            try:
                image = self.load_image(current)
                captions = self.image_captions_at(current)
            except DatasetSampleError as err:
                if self.on_error == "raise":
                    raise
                self._record_skip(err)
                last_error = err
                continue
            return self.transform(image), self._choose_caption(captions)
        raise DatasetSampleError(
            f"{attempt + 1} consecutive unreadable samples from index {index} "
            f"(on_error='skip'); last error: {last_error}",
            None if last_error is None else last_error.path,
        )

    def check_files(self) -> List[Tuple[str, str]]:
        """Reads every sample once; returns ``(path, error message)`` of the broken
        ones (nothing is counted as skipped)."""
        broken = []
        for i in range(len(self)):
            try:
                self.load_image(i)
                self.image_captions_at(i)
            except DatasetSampleError as err:
                broken.append((err.path or "", str(err)))
        return broken


# --------------------------------------------------------------------------- batching


def collate_captions(
    batch: Sequence[Tuple[Tensor, Union[str, List[str]]]],
) -> Tuple[Tensor, List[Union[str, List[str]]]]:
    """Stacks the images of a batch and keeps the captions as a list.

    Raises:
        ValueError: when the images differ in size (set a ``patch_size``).
    """
    images = [sample[0] for sample in batch]
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"Images of a batch differ in size {sorted(shapes)}; set patch_size "
            "(crop or resize) on the dataset"
        )
    return torch.stack(images), [sample[1] for sample in batch]
