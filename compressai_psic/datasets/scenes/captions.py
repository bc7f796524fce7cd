r"""Captions of scenes: exact descriptions, canonical or reworded.

A caption names, for every group of identical objects, the count, size, colour
and shape, the grid position of single objects, and the background texture and
colour::

    a large red circle at the top left, two small blue stars and a small
    yellow cross at the bottom on a striped grey background
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .spec import SceneObject, SceneSpec

__all__ = ["caption_scene", "position_phrase", "scene_captions"]


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
