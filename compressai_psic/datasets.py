r"""Image–caption datasets for training and evaluating privacy-shielded codecs.

PSIC trains on image–caption pairs (the paper uses CC3M) and evaluates retrieval
on Flickr8k, see `"Privacy-Shielded Image Compression: Defending Against
Exploitation from Vision-Language Pretrained Models"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025. This module reads:

- :class:`Flickr8kCaptions`: a folder with ``captions.txt`` (CSV with an
  ``image,caption`` header, several rows per image) and the images in ``Images/``
  (or next to ``captions.txt``), optionally restricted to a split list;
- :class:`CaptionListDataset`: a list file of path stems, each with ``stem.jpg``
  and ``stem.txt`` (the CC3M layout written by img2dataset);
- :class:`RateDistortionImages`: CompressAI's :class:`~compressai.datasets.ImageFolder`
  layout (``root/<split>/*``) for rate–distortion-only training; its caption is
  always ``""``;
- :class:`SceneCaptions`: the procedural benchmark of :mod:`compressai_psic.scenes`,
  rendered on the fly.

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

import csv
import math
import os
import struct
import warnings
from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms

from .scenes import render_scene, split_samples

__all__ = [
    "CAPTION_MODES",
    "CROP_MODES",
    "ON_ERROR",
    "CaptionDataset",
    "CaptionListDataset",
    "DatasetImageError",
    "DatasetSampleError",
    "EnsureMinSize",
    "Flickr8kCaptions",
    "RateDistortionImages",
    "SceneCaptions",
    "collate_captions",
    "image_transform",
    "load_rgb_image",
    "read_captions_file",
    "read_name_list",
]

CAPTION_MODES = ("random", "first", "all")
CROP_MODES = ("random_crop", "center_crop", "resize")
ON_ERROR = ("raise", "skip")

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


def read_captions_file(path: PathLike) -> Dict[str, List[str]]:
    """Reads a Flickr8k-style ``captions.txt``.

    The file is CSV with a header row naming an ``image`` and a ``caption`` column
    (other columns are ignored); captions may be quoted and contain commas and
    quotes. When the caption is the last column, unquoted commas in it are kept
    (extra fields are joined back). Blank lines are skipped.

    Returns:
        ``{image name: [captions]}`` in order of first appearance.

    Raises:
        ValueError: naming the file and line for a missing header, a row with too
            few fields, or an empty image name or caption.
    """
    path = os.fspath(path)
    captions: Dict[str, List[str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = None
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                if "image" not in header or "caption" not in header:
                    raise ValueError(
                        f"{path}, line {reader.line_num}: expected a header with "
                        f"columns 'image' and 'caption', got {row!r}"
                    )
                image_col, caption_col = header.index("image"), header.index("caption")
                caption_is_last = caption_col == len(header) - 1
                continue
            if len(row) < len(header) or (
                len(row) > len(header) and not caption_is_last
            ):
                raise ValueError(
                    f"{path}, line {reader.line_num}: expected {len(header)} fields "
                    f"({', '.join(header)}), got {len(row)}: {row!r}"
                )
            name = row[image_col].strip()
            if caption_is_last:
                caption = ",".join(row[caption_col:]).strip()
            else:
                caption = row[caption_col].strip()
            if not name or not caption:
                what = "image name" if not name else "caption"
                raise ValueError(f"{path}, line {reader.line_num}: empty {what}")
            captions.setdefault(name, []).append(caption)
    if header is None:
        raise ValueError(f"{path}: empty file, expected an 'image,caption' header")
    return captions


def read_name_list(path: PathLike) -> List[str]:
    """Non-blank lines of a list file, stripped; lines starting with ``#`` are
    comments."""
    with open(os.fspath(path), encoding="utf-8-sig") as f:
        lines = (line.strip() for line in f)
        return [line for line in lines if line and not line.startswith("#")]


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

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width >= self.width and height >= self.height:
            return image
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


class Flickr8kCaptions(CaptionDataset):
    """Flickr8k-style folder: ``root/captions.txt`` and images.

    .. code-block:: none

        root/captions.txt    image,caption   (header; several rows per image)
        root/Images/*.jpg    (or the images directly in root/)
        root/train.txt       optional split lists, one image name per line

    Args:
        root: dataset folder.
        split: ``None`` (every image of ``captions.txt``), a path to a list file of
            image names (e.g. ``Flickr_8k.testImages.txt``), the name of a list
            ``root/<split>.txt`` (as :func:`compressai_psic.scenes.write_split`
            writes), or a sequence of image names.
        captions_file: caption file name or path, relative to ``root``.
        image_dir: image folder; default ``root/Images`` if it exists, else ``root``.
        **kwargs: see :class:`CaptionDataset`.

    Attributes:
        images: image paths, in index order.
        image_names: image file names as written in ``captions.txt``.
    """

    def __init__(
        self,
        root: PathLike,
        split: Union[PathLike, Sequence[str], None] = None,
        captions_file: PathLike = "captions.txt",
        image_dir: PathLike | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root = os.fspath(root)
        captions_path = os.path.join(self.root, os.fspath(captions_file))
        if not os.path.isfile(captions_path):
            raise FileNotFoundError(f"Caption file not found: {captions_path}")
        all_captions = read_captions_file(captions_path)
        if image_dir is None:
            images_sub = os.path.join(self.root, "Images")
            image_dir = images_sub if os.path.isdir(images_sub) else self.root
        self.image_dir = os.fspath(image_dir)

        names = self._split_names(split, all_captions)
        self.image_names: List[str] = names
        self.images: List[str] = [os.path.join(self.image_dir, n) for n in names]
        self._captions: List[List[str]] = [all_captions[n] for n in names]

    def _split_names(self, split, all_captions: Dict[str, List[str]]) -> List[str]:
        if split is None:
            return list(all_captions)
        if isinstance(split, (str, os.PathLike)):
            split_path = os.fspath(split)
            named = os.path.join(self.root, f"{split_path}.txt")
            if os.path.isfile(split_path):
                names = read_name_list(split_path)
            elif os.sep not in split_path and os.path.isfile(named):
                names = read_name_list(named)
            else:
                raise FileNotFoundError(
                    f"Split list not found: {split_path} (nor {named})"
                )
        else:
            names = [str(n).strip() for n in split]
        missing = [n for n in names if n not in all_captions]
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) of the split have no caption in "
                f"captions.txt, e.g. {missing[:5]}"
            )
        return names

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        return load_rgb_image(self.images[index])

    def image_captions_at(self, index: int) -> List[str]:
        return list(self._captions[index])

    @property
    def captions(self) -> List[List[str]]:
        return [list(c) for c in self._captions]

    @property
    def image_captions(self) -> Dict[str, List[str]]:
        """``{image path: captions}``."""
        return {path: list(c) for path, c in zip(self.images, self._captions)}


class CaptionListDataset(CaptionDataset):
    """CC3M-style pairs listed by path stem: ``stem.jpg`` + ``stem.txt``.

    Args:
        list_file: one stem per line (relative to ``root``, or absolute); a trailing
            image extension is tolerated; blank lines and ``#`` comments are skipped.
        root: base folder of relative stems; default: the list file's folder.
        image_extensions: tried in order for each stem.
        **kwargs: see :class:`CaptionDataset`.

    Captions are read when a sample is loaded; ``captions`` reads them all.
    """

    def __init__(
        self,
        list_file: PathLike,
        root: PathLike | None = None,
        image_extensions: Sequence[str] = (".jpg", ".jpeg", ".png", ".webp"),
        **kwargs,
    ):
        super().__init__(**kwargs)
        list_file = os.fspath(list_file)
        self.root = os.fspath(root) if root is not None else os.path.dirname(list_file)
        self.image_extensions = tuple(e.lower() for e in image_extensions)
        stems = []
        for line in read_name_list(list_file):
            base, ext = os.path.splitext(line)
            stems.append(base if ext.lower() in self.image_extensions else line)
        self.stems: List[str] = [os.path.join(self.root, s) for s in stems]

    def __len__(self) -> int:
        return len(self.stems)

    def image_path(self, index: int) -> str:
        """The first existing ``stem + extension`` (the first candidate if none)."""
        stem = self.stems[index]
        candidates = [stem + ext for ext in self.image_extensions]
        return next((p for p in candidates if os.path.isfile(p)), candidates[0])

    @property
    def images(self) -> List[str]:
        return [self.image_path(i) for i in range(len(self))]

    def load_image(self, index: int) -> Image.Image:
        return load_rgb_image(self.image_path(index))

    def image_captions_at(self, index: int) -> List[str]:
        path = self.stems[index] + ".txt"
        try:
            with open(path, encoding="utf-8") as f:
                caption = f.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetSampleError(
                f"Cannot read caption {path}: {type(err).__name__}: {err}", path
            ) from err
        if not caption:
            raise DatasetSampleError(f"Empty caption file {path}", path)
        return [caption]


class RateDistortionImages(CaptionDataset):
    """CompressAI's :class:`~compressai.datasets.ImageFolder` layout
    (``root/<split>/*``) for rate–distortion-only training.

    Samples are ``(image, "")``: the empty caption tells the trainer that no
    caption exists, and the error handling is that of :class:`CaptionDataset`.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        patch_size: Union[int, Tuple[int, int], None] = 256,
        mode: str = "random_crop",
        **kwargs,
    ):
        from compressai.datasets import ImageFolder

        kwargs.setdefault("caption_mode", "first")
        super().__init__(patch_size=patch_size, mode=mode, **kwargs)
        # ImageFolder checks the layout and lists the files the same way
        # CompressAI's own training does.
        folder = ImageFolder(os.fspath(root), split=split)
        self.images: List[str] = [os.fspath(p) for p in folder.samples]

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        return load_rgb_image(self.images[index])

    def image_captions_at(self, index: int) -> List[str]:
        return [""]


class SceneCaptions(CaptionDataset):
    """The procedural benchmark of :mod:`compressai_psic.scenes`, rendered on the fly.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint random streams).
        num_samples: number of scenes.
        seed: benchmark seed.
        image_size: rendered size in pixels (then ``transform`` / ``patch_size``).
        captions_per_image: canonical caption plus rewordings.
        distinct_captions: skip scenes whose canonical caption already occurred,
            so that retrieval has exactly one correct caption per image.
        cache: keep rendered images in memory (for many epochs over a small set).
        **kwargs: see :class:`CaptionDataset`.
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 1000,
        seed: int = 0,
        image_size: int = 64,
        captions_per_image: int = 1,
        distinct_captions: bool = False,
        cache: bool = False,
        supersample: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.samples = split_samples(
            split, num_samples, seed, captions_per_image, distinct_captions
        )
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        self._cache: Dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = render_scene(
            self.samples[index].spec, self.image_size, self.supersample
        )
        if self._cache is not None:
            self._cache[index] = image
        return image

    def image_captions_at(self, index: int) -> List[str]:
        return list(self.samples[index].captions)


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
