r"""Image–caption pairs from files: Flickr8k folders and CC3M-style lists.

PSIC trains on image–caption pairs (the paper uses CC3M) and evaluates retrieval
on Flickr8k. This module reads:

- :class:`Flickr8kCaptions`: a folder with ``captions.txt`` (CSV with an
  ``image,caption`` header, several rows per image) and the images in ``Images/``
  (or next to ``captions.txt``), optionally restricted to a split list;
- :class:`CaptionListDataset`: a list file of path stems, each with ``stem.jpg``
  and ``stem.txt`` (the CC3M layout written by img2dataset).

Errors and the sample interface are those of
:class:`~compressai_psic.datasets.base.CaptionDataset`.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List, Sequence, Union

from PIL import Image

from .base import CaptionDataset, DatasetSampleError, PathLike, load_rgb_image

__all__ = [
    "CaptionListDataset",
    "Flickr8kCaptions",
    "read_captions_file",
    "read_name_list",
]


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
            ``root/<split>.txt`` (as :func:`compressai_psic.datasets.scenes.write_split`
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
