r"""The benchmark's splits: seeded random scenes with their captions.

Everything is a pure function of a seed: :func:`split_rng` derives one independent
random stream per ``(seed, split, index)``, so the train, validation and test splits
never share a scene stream, any sample can be regenerated on its own, and a split
of ``n`` scenes is a prefix of the same split with more scenes.
:func:`split_samples` lists a split's scenes and captions without rendering them;
:func:`write_split` writes a split as a Flickr8k-style folder.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Tuple

import numpy as np
from PIL import Image

from .captions import scene_captions
from .render import render_scene
from .spec import (
    BACKGROUND_COLOURS,
    COLOURS,
    GRID,
    SHAPES,
    SIZES,
    TEXTURES,
    Background,
    SceneObject,
    SceneSpec,
    check_choice,
)

__all__ = [
    "SPLITS",
    "SceneSample",
    "make_split",
    "sample_scene",
    "split_rng",
    "split_samples",
    "write_split",
]

#: Split names; each has its own random stream.
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Tags that keep the scene stream and the caption-wording stream of one sample
# independent of each other (and of any other use of the same user seed).
_SCENE_STREAM = 0x5C3E
_CAPTION_STREAM = 0xCA97


@dataclass(frozen=True)
class SceneSample:
    """A scene of a split with its captions (the first one is canonical).

    ``index`` is the position in the split's random stream, which differs from the
    position in the split when ``distinct_captions`` skipped some scenes.
    """

    split: str
    index: int
    spec: SceneSpec
    captions: Tuple[str, ...]

    @property
    def name(self) -> str:
        """File stem of the sample, unique across splits."""
        return f"{self.split}_{self.index:06d}"


# --------------------------------------------------------------------------- sampling


def split_rng(
    split: str, index: int, seed: int = 0, stream: str = "scene"
) -> np.random.Generator:
    """Independent random generator of sample ``index`` of ``split``.

    ``stream="scene"`` drives the scene content, ``stream="caption"`` the wording of
    the alternative captions, so more captions never change the scenes.
    """
    check_choice("split", split, SPLITS)
    check_choice("stream", stream, ("scene", "caption"))
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    tag = _SCENE_STREAM if stream == "scene" else _CAPTION_STREAM
    return np.random.default_rng([tag, int(seed), _SPLIT_IDS[split], int(index)])


def sample_scene(
    rng: np.random.Generator,
    min_objects: int = 1,
    max_objects: int = 3,
    repeat_probability: float = 0.35,
) -> SceneSpec:
    """Draws a random scene.

    Args:
        rng: random generator (see :func:`split_rng`).
        min_objects, max_objects: range of the object count (0 to 9).
        repeat_probability: chance that an object copies the size, colour and
            shape of the previous one, so that captions also have to count.
    """
    if not 0 <= min_objects <= max_objects <= GRID * GRID:
        raise ValueError(
            f"Need 0 <= min_objects <= max_objects <= {GRID * GRID}, "
            f"got {min_objects}, {max_objects}"
        )
    count = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    objects: List[SceneObject] = []
    for i, cell in enumerate(cells):
        if i > 0 and rng.random() < repeat_probability:
            size, colour, shape = objects[-1].kind
        else:
            shape = SHAPES[rng.integers(len(SHAPES))]
            colour = list(COLOURS)[rng.integers(len(COLOURS))]
            size = list(SIZES)[rng.integers(len(SIZES))]
        # Jitter the centre but keep the whole shape inside its cell, so the
        # position word is unambiguous and objects never touch.
        slack = max(0.5 / GRID - SIZES[size] - 0.005, 0.0)
        row, column = divmod(int(cell), GRID)
        x = (column + 0.5) / GRID + rng.uniform(-slack, slack)
        y = (row + 0.5) / GRID + rng.uniform(-slack, slack)
        objects.append(SceneObject(shape, colour, size, float(x), float(y)))

    texture = TEXTURES[rng.integers(len(TEXTURES))]
    colour = list(BACKGROUND_COLOURS)[rng.integers(len(BACKGROUND_COLOURS))]
    if texture == "striped":
        angle, period = (
            float(rng.choice([0.0, 45.0, 90.0, 135.0])),
            rng.uniform(0.07, 0.16),
        )
    elif texture == "checkered":
        angle, period = 0.0, rng.uniform(0.1, 0.22)
    elif texture == "gradient":
        angle, period = rng.uniform(0.0, 360.0), 1.0
    else:
        angle, period = 0.0, 1.0
    background = Background(
        texture=texture,
        colour=colour,
        angle=float(angle),
        period=float(period),
        seed=int(rng.integers(2**31)),
    )
    return SceneSpec(objects=tuple(objects), background=background)


# --------------------------------------------------------------------------- splits


def split_samples(
    split: str,
    n: int,
    seed: int = 0,
    captions_per_image: int = 1,
    distinct_captions: bool = False,
    max_objects: int = 3,
) -> List[SceneSample]:
    """The first ``n`` scenes of a split, with their captions (nothing is rendered).

    With ``distinct_captions`` scenes whose canonical caption already occurred
    earlier in the split are skipped, so that retrieval over the split has exactly
    one correct caption per image (useful for evaluation splits).
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    samples: List[SceneSample] = []
    seen = set()
    index = 0
    # Distinct canonical captions are plentiful (millions); the bound only guards
    # against requests larger than the caption space.
    max_index = n if not distinct_captions else 50 * n + 1000
    while len(samples) < n:
        if index >= max_index:
            raise ValueError(f"Could not find {n} scenes with distinct captions")
        spec = sample_scene(split_rng(split, index, seed), max_objects=max_objects)
        caption_rng = (
            split_rng(split, index, seed, stream="caption")
            if captions_per_image > 1
            else None
        )
        captions = scene_captions(spec, captions_per_image, caption_rng)
        if not (distinct_captions and captions[0] in seen):
            seen.add(captions[0])
            samples.append(SceneSample(split, index, spec, tuple(captions)))
        index += 1
    return samples


def make_split(
    split: str,
    n: int,
    seed: int = 0,
    image_size: int = 128,
    supersample: int = 2,
    distinct_captions: bool = False,
) -> Iterator[Tuple[Image.Image, str]]:
    """Yields ``(image, canonical caption)`` for the first ``n`` scenes of a split."""
    for sample in split_samples(split, n, seed, distinct_captions=distinct_captions):
        yield render_scene(sample.spec, image_size, supersample), sample.captions[0]


def write_split(
    root,
    split: str,
    n: int,
    seed: int = 0,
    image_size: int = 128,
    captions_per_image: int = 1,
    supersample: int = 2,
    distinct_captions: bool = False,
) -> Dict[str, object]:
    """Writes a split as a Flickr8k-style folder that
    :class:`~compressai_psic.datasets.Flickr8kCaptions` reads.

    Layout (several splits can share one ``root``)::

        root/Images/<split>_<index>.png
        root/captions.txt         # "image,caption" header, one row per caption
        root/<split>.txt          # image names of the split, one per line
        root/<split>_scenes.jsonl # scene specs, for checking captions against pixels

    Rows of ``captions.txt`` that belong to other splits are kept; those of
    ``split`` are replaced, so writing a split twice gives the same folder.

    Returns:
        dict with ``root``, ``split``, ``num_images`` and ``num_captions``.
    """
    check_choice("split", split, SPLITS)
    root = os.fspath(root)
    image_dir = os.path.join(root, "Images")
    os.makedirs(image_dir, exist_ok=True)
    samples = split_samples(split, n, seed, captions_per_image, distinct_captions)

    captions_path = os.path.join(root, "captions.txt")
    kept_rows: List[List[str]] = []
    if os.path.exists(captions_path):
        with open(captions_path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if rows[:1] != [["image", "caption"]]:
            raise ValueError(
                f"{captions_path} exists but has no 'image,caption' header"
            )
        kept_rows = [row for row in rows[1:] if row and _row_split(row[0]) != split]

    rows_out = []
    for sample in samples:
        file_name = sample.name + ".png"
        image = render_scene(sample.spec, image_size, supersample)
        image.save(os.path.join(image_dir, file_name))
        rows_out.extend([file_name, caption] for caption in sample.captions)

    with open(captions_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows(kept_rows + rows_out)
    with open(os.path.join(root, f"{split}.txt"), "w", encoding="utf-8") as f:
        f.writelines(sample.name + ".png\n" for sample in samples)
    with open(os.path.join(root, f"{split}_scenes.jsonl"), "w", encoding="utf-8") as f:
        for sample in samples:
            record = {"image": sample.name + ".png", "scene": sample.spec.to_dict()}
            f.write(json.dumps(record) + "\n")
    return {
        "root": root,
        "split": split,
        "num_images": len(samples),
        "num_captions": len(rows_out),
    }


def _row_split(image_name: str) -> str | None:
    prefix = image_name.split("_", 1)[0]
    return prefix if prefix in _SPLIT_IDS else None
