r"""Procedural image–caption benchmark: rendered shape scenes with exact captions.

Every scene is a textured background with one to three coloured shapes placed in
the cells of a 3×3 grid; its caption names, for every group of identical objects,
the count, size, colour and shape, the grid position of single objects, and the
background texture and colour::

    a large red circle at the top left, two small blue stars and a small
    yellow cross at the bottom on a striped grey background

Everything is a pure function of a seed: :func:`split_rng` derives one independent
random stream per ``(seed, split, index)``, so the train, validation and test splits
never share a scene stream, any sample can be regenerated on its own, and a split
of ``n`` scenes is a prefix of the same split with more scenes.

The benchmark stands in for real image–caption data (CC3M, Flickr8k) where none can
be downloaded: it is small enough to train a CLIP-architecture model and a PSIC
codec in minutes, and rich enough (7 shapes × 8 colours × 2 sizes × 9 positions per
object, up to three objects, 5 textures × 6 background colours) that 100-way
retrieval is chance-level for an untrained model. It supports demonstrations and
tests of `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025;
it is not part of the published method.

Rendering uses PIL's :class:`~PIL.ImageDraw.ImageDraw` on a supersampled canvas
that is box-filtered down (anti-aliasing); a scene takes about 1 ms at 64×64
and 2 ms at 128×128 on one CPU core.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "BACKGROUND_COLOURS",
    "COLOURS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "TEXTURES",
    "Background",
    "SceneObject",
    "SceneSample",
    "SceneSpec",
    "caption_scene",
    "make_split",
    "position_phrase",
    "render_object_masks",
    "render_scene",
    "sample_scene",
    "scene_captions",
    "split_rng",
    "split_samples",
    "write_split",
]

#: Object shapes. Each is drawn inside a circle of the object's radius.
SHAPES = ("circle", "ring", "square", "triangle", "diamond", "star", "cross")

#: Object colours: saturated, or white, so that they stand out from every background.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "orange": (250, 135, 0),
    "yellow": (250, 225, 30),
    "green": (30, 170, 50),
    "cyan": (0, 200, 220),
    "blue": (30, 70, 230),
    "purple": (150, 40, 200),
    "white": (250, 250, 250),
}

#: Object radius as a fraction of the image side. A large object (diameter 0.30)
#: still fits in one grid cell (side 1/3), so objects never overlap.
SIZES: Dict[str, float] = {"small": 0.08, "large": 0.15}

#: Background textures, named by the adjective the caption uses.
TEXTURES = ("plain", "striped", "checkered", "speckled", "gradient")

#: Muted background colours, far from every object colour even after texturing.
BACKGROUND_COLOURS: Dict[str, Tuple[int, int, int]] = {
    "grey": (125, 125, 125),
    "brown": (120, 88, 62),
    "olive": (108, 112, 60),
    "slate": (78, 92, 118),
    "beige": (172, 158, 128),
    "plum": (108, 72, 98),
}

#: Split names; each has its own random stream.
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Tags that keep the scene stream and the caption-wording stream of one sample
# independent of each other (and of any other use of the same user seed).
_SCENE_STREAM = 0x5C3E
_CAPTION_STREAM = 0xCA97

# Largest brightness offset a texture adds to its background colour.
_TEXTURE_AMPLITUDE = 24.0

_GRID = 3
_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")

# Canonical position phrase first, then alternative wordings, per (row, column).
_POSITION_PHRASES = {
    (0, 0): ("at the top left", "in the top left corner", "in the upper left"),
    (0, 1): ("at the top", "at the top centre", "near the top"),
    (0, 2): ("at the top right", "in the top right corner", "in the upper right"),
    (1, 0): ("on the left", "at the left", "on the left side"),
    (1, 1): ("in the centre", "in the middle", "in the center"),
    (1, 2): ("on the right", "at the right", "on the right side"),
    (2, 0): ("at the bottom left", "in the bottom left corner", "in the lower left"),
    (2, 1): ("at the bottom", "at the bottom centre", "near the bottom"),
    (2, 2): ("at the bottom right", "in the bottom right corner", "in the lower right"),
}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_TEXTURE_WORDS = {
    "plain": ("plain", "flat", "uniform"),
    "striped": ("striped", "stripy"),
    "checkered": ("checkered", "chequered", "checked"),
    "speckled": ("speckled", "mottled", "noisy"),
    "gradient": ("gradient", "shaded"),
}
_BACKGROUND_WORDS = {"grey": ("grey", "gray")}
_COUNT_WORDS = {1: ("a", "one"), 2: ("two",), 3: ("three",)}
_PREFIXES = ("a picture of", "an image of", "a drawing of", "a rendering of")


@dataclass(frozen=True)
class SceneObject:
    """One shape; ``x`` and ``y`` are its centre as fractions of the image side."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("size", self.size, SIZES)
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"Object centre must lie in [0, 1]², got {self.x, self.y}")

    @property
    def radius(self) -> float:
        """Radius as a fraction of the image side."""
        return SIZES[self.size]

    @property
    def cell(self) -> Tuple[int, int]:
        """Grid cell ``(row, column)`` of the centre, row 0 at the top."""
        row = min(int(self.y * _GRID), _GRID - 1)
        column = min(int(self.x * _GRID), _GRID - 1)
        return row, column

    @property
    def kind(self) -> Tuple[str, str, str]:
        """``(size, colour, shape)``: objects of the same kind are counted together."""
        return self.size, self.colour, self.shape


@dataclass(frozen=True)
class Background:
    """Background texture.

    ``angle`` (degrees) orients stripes and gradients, ``period`` (fraction of the
    image side) sets the stripe or check width, and ``seed`` drives the speckle noise.
    """

    texture: str = "plain"
    colour: str = "grey"
    angle: float = 0.0
    period: float = 0.125
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("texture", self.texture, TEXTURES)
        _check_choice("background colour", self.colour, BACKGROUND_COLOURS)
        if not self.period > 0:
            raise ValueError(f"Background period must be positive, got {self.period}")


@dataclass(frozen=True)
class SceneSpec:
    """A scene: objects (at most one per grid cell) on a background."""

    objects: Tuple[SceneObject, ...] = ()
    background: Background = field(default_factory=Background)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        cells = [obj.cell for obj in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"At most one object per grid cell, got cells {cells}")

    def to_dict(self) -> dict:
        """JSON-serialisable form; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SceneSpec:
        return cls(
            objects=tuple(SceneObject(**obj) for obj in data["objects"]),
            background=Background(**data["background"]),
        )


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


def _check_choice(what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"Invalid {what} {value!r}; allowed: {', '.join(allowed)}")


# --------------------------------------------------------------------------- sampling


def split_rng(
    split: str, index: int, seed: int = 0, stream: str = "scene"
) -> np.random.Generator:
    """Independent random generator of sample ``index`` of ``split``.

    ``stream="scene"`` drives the scene content, ``stream="caption"`` the wording of
    the alternative captions, so more captions never change the scenes.
    """
    _check_choice("split", split, SPLITS)
    _check_choice("stream", stream, ("scene", "caption"))
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
    if not 0 <= min_objects <= max_objects <= _GRID * _GRID:
        raise ValueError(
            f"Need 0 <= min_objects <= max_objects <= {_GRID * _GRID}, "
            f"got {min_objects}, {max_objects}"
        )
    count = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(_GRID * _GRID, size=count, replace=False)
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
        slack = max(0.5 / _GRID - SIZES[size] - 0.005, 0.0)
        row, column = divmod(int(cell), _GRID)
        x = (column + 0.5) / _GRID + rng.uniform(-slack, slack)
        y = (row + 0.5) / _GRID + rng.uniform(-slack, slack)
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


# --------------------------------------------------------------------------- captions


def position_phrase(obj: SceneObject, variant: int = 0) -> str:
    """Words for the grid cell of ``obj`` (``variant`` 0 is canonical)."""
    phrases = _POSITION_PHRASES[obj.cell]
    return phrases[variant % len(phrases)]


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def _pick(rng: np.random.Generator | None, options: Sequence[str]) -> str:
    return options[0] if rng is None else options[rng.integers(len(options))]


def _join(parts: List[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_scene(spec: SceneSpec, rng: np.random.Generator | None = None) -> str:
    """Describes a scene.

    Identical objects (same size, colour and shape) are counted together; a single
    object also gets its grid position. Groups are listed in reading order of
    their first object. Without ``rng`` the caption is canonical (one per scene);
    with it, the wording varies (synonyms, group order, templates) while the
    content stays the same.
    """
    groups: Dict[Tuple[str, str, str], List[SceneObject]] = {}
    for obj in sorted(spec.objects, key=lambda o: o.cell):
        groups.setdefault(obj.kind, []).append(obj)

    parts = []
    for (size, colour, shape), members in groups.items():
        count = len(members)
        words = [
            _pick(rng, _COUNT_WORDS.get(count, (str(count),))),
            _pick(rng, _SIZE_WORDS[size]),
            colour,
            shape if count == 1 else _plural(shape),
        ]
        if count == 1:
            phrases = _POSITION_PHRASES[members[0].cell]
            words.append(_pick(rng, phrases))
        parts.append(" ".join(words))
    if rng is not None:
        parts = [parts[i] for i in rng.permutation(len(parts))]

    bg = spec.background
    background = " ".join(
        [
            _pick(rng, _TEXTURE_WORDS[bg.texture]),
            _pick(rng, _BACKGROUND_WORDS.get(bg.colour, (bg.colour,))),
            "background",
        ]
    )
    if not parts:
        return f"an empty {background}"
    objects = _join(parts)
    template = 0 if rng is None else int(rng.integers(3))
    if template == 0:
        return f"{objects} on a {background}"
    if template == 1:
        return f"a {background} with {objects}"
    return f"{_pick(rng, _PREFIXES)} {objects} on a {background}"


def scene_captions(
    spec: SceneSpec, count: int, rng: np.random.Generator | None = None
) -> List[str]:
    """``count`` captions of a scene: the canonical one, then distinct rewordings.

    Rewordings are drawn from ``rng`` until ``count`` distinct ones are found or a
    bounded number of draws is spent (a few scenes have fewer wordings), in which
    case wordings repeat.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    captions = [caption_scene(spec)]
    if count > 1 and rng is None:
        raise ValueError("More than one caption needs a random generator")
    draws = 0
    while len(captions) < count:
        caption = caption_scene(spec, rng)
        draws += 1
        if caption not in captions or draws > 20 * count:
            captions.append(caption)
    return captions


# --------------------------------------------------------------------------- rendering


def _canvas_size(size: int, supersample: int) -> int:
    if int(size) < 8:
        raise ValueError(f"Image size must be at least 8 pixels, got {size}")
    if int(supersample) < 1:
        raise ValueError(f"supersample must be at least 1, got {supersample}")
    return int(size) * int(supersample)


def _background_array(background: Background, side: int) -> np.ndarray:
    """Background as a uint8 (side, side, 3) array."""
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side
    xs, ys = coords[None, :], coords[:, None]
    amplitude = _TEXTURE_AMPLITUDE
    theta = math.radians(background.angle)
    texture = background.texture
    if texture == "plain":
        tone = np.zeros((side, side), dtype=np.float32)
    elif texture == "striped":
        phase = (xs * math.cos(theta) + ys * math.sin(theta)) / background.period
        tone = np.where(np.floor(phase) % 2 == 0, -amplitude, amplitude)
    elif texture == "checkered":
        parity = np.floor(xs / background.period) + np.floor(ys / background.period)
        tone = np.where(parity % 2 == 0, -amplitude, amplitude)
    elif texture == "gradient":
        # Projection on the direction spans at most [-1/√2, 1/√2]; scale to ±A.
        along = (xs - 0.5) * math.cos(theta) + (ys - 0.5) * math.sin(theta)
        tone = along * (amplitude * math.sqrt(2.0))
    else:  # speckled: blotches plus fine grain
        noise_rng = np.random.default_rng(background.seed)
        coarse = noise_rng.standard_normal((8, 8), dtype=np.float32)
        coarse = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC))
        fine = noise_rng.standard_normal((side, side), dtype=np.float32)
        tone = np.clip(14.0 * coarse + 8.0 * fine, -amplitude, amplitude)
    # Integer arithmetic per channel: much faster than a float (side, side, 3) pass.
    tone = np.rint(tone).astype(np.int16)
    out = np.empty((side, side, 3), dtype=np.uint8)
    for channel, value in enumerate(BACKGROUND_COLOURS[background.colour]):
        np.clip(tone + value, 0, 255, out=out[..., channel], casting="unsafe")
    return out


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> List[tuple]:
    """Vertices (canvas pixels) of the polygonal shapes, apex up."""
    if shape == "square":
        h = 0.78 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":  # equilateral, centroid at the centre
        return [
            (cx + r * math.cos(a), cy - r * math.sin(a))
            for a in (
                math.pi / 2,
                math.pi / 2 + 2 * math.pi / 3,
                math.pi / 2 + 4 * math.pi / 3,
            )
        ]
    if shape == "diamond":  # a rhombus taller than wide, so it is no rotated square
        return [(cx, cy - r), (cx + 0.72 * r, cy), (cx, cy + r), (cx - 0.72 * r, cy)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else 0.45 * r
            angle = math.pi / 2 + k * math.pi / 5
            points.append(
                (cx + radius * math.cos(angle), cy - radius * math.sin(angle))
            )
        return points
    if shape == "cross":  # a plus sign of half-width 0.3 r and arm length 0.95 r
        a, w = 0.95 * r, 0.3 * r
        offsets = [
            (-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w),
            (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w),
        ]  # fmt: skip
        return [(cx + dx, cy + dy) for dx, dy in offsets]
    raise ValueError(f"{shape!r} is not a polygon; allowed: square, triangle, ...")


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, fill) -> None:
    cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
    if obj.shape == "circle":
        c = 0.9 * r
        draw.ellipse([cx - c, cy - c, cx + c, cy + c], fill=fill)
    elif obj.shape == "ring":
        # The hole is cut afterwards by _draw_ring_hole, which restores what lies
        # underneath (the textured background).
        outer = 0.95 * r
        draw.ellipse([cx - outer, cy - outer, cx + outer, cy + outer], fill=fill)
    else:
        draw.polygon(_shape_polygon(obj.shape, cx, cy, r), fill=fill)


def _draw_ring_hole(image: Image.Image, obj: SceneObject, side: int, under) -> None:
    """Restores the background inside a ring (``under`` is the background image)."""
    cx, cy, r = obj.x * side, obj.y * side, 0.57 * obj.radius * side
    hole = Image.new("L", image.size, 0)
    ImageDraw.Draw(hole).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    image.paste(under, (0, 0), hole)


def render_scene(spec: SceneSpec, size: int = 128, supersample: int = 2) -> Image.Image:
    """Renders a scene as an RGB image of ``size``×``size`` pixels.

    Drawing happens at ``size * supersample`` pixels and is box-filtered down, which
    anti-aliases the edges.
    """
    side = _canvas_size(size, supersample)
    background = Image.fromarray(_background_array(spec.background, side))
    image = background.copy()
    draw = ImageDraw.Draw(image)
    for obj in spec.objects:
        _draw_object(draw, obj, side, COLOURS[obj.colour])
        if obj.shape == "ring":
            _draw_ring_hole(image, obj, side, background)
    if supersample > 1:
        image = image.resize((int(size), int(size)), Image.BOX)
    return image


def render_object_masks(
    spec: SceneSpec, size: int = 128, supersample: int = 2, threshold: float = 0.5
) -> np.ndarray:
    """Boolean masks ``(num_objects, size, size)`` of the pixels each object covers.

    A pixel belongs to an object when the object covers more than ``threshold`` of
    it; the masks use the same geometry as :func:`render_scene`.
    """
    side = _canvas_size(size, supersample)
    masks = np.zeros((len(spec.objects), int(size), int(size)), dtype=bool)
    for i, obj in enumerate(spec.objects):
        canvas = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(canvas)
        _draw_object(draw, obj, side, 255)
        if obj.shape == "ring":
            _draw_ring_hole(canvas, obj, side, Image.new("L", (side, side), 0))
        if supersample > 1:
            canvas = canvas.resize((int(size), int(size)), Image.BOX)
        masks[i] = np.asarray(canvas) > threshold * 255
    return masks


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
    """Writes a split as a Flickr8k-style folder that :mod:`compressai_psic.datasets`
    reads.

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
    _check_choice("split", split, SPLITS)
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
