"""The demo's picture: scenes beside their decodes, with the VLP's guesses."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..evaluation.retrieval import embed_images, embed_texts, similarity

__all__ = ["draw_grid", "top1_captions", "wrap_text"]

#: Pixels between a caption and the edges of its cell.
_MARGIN = 3


def top1_captions(
    vlp: Any, images: Dict[str, Tensor], captions: Sequence[str]
) -> Dict[str, List[str]]:
    """The caption ``vlp`` ranks first for every image of each named batch."""
    text = embed_texts(vlp, captions)
    out = {}
    for name, batch in images.items():
        sim = similarity(embed_images(vlp, batch), text)
        out[name] = [captions[int(i)] for i in sim.argmax(dim=1)]
    return out


def wrap_text(text: str, font: Any, width: float) -> List[str]:
    """``text`` broken into lines no wider than ``width`` pixels in ``font``.

    Words wider than a line are cut at the character that overflows; nothing
    is dropped, so a long caption takes more lines instead of being clipped.
    """

    def fits(line: str) -> bool:
        return font.getlength(line) <= width

    lines: List[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        while word and not fits(word):
            cut = 1  # at least one character per line, however narrow
            while cut < len(word) and fits(word[: cut + 1]):
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def draw_grid(
    images: Dict[str, Tensor],
    true_captions: Sequence[str],
    top1: Dict[str, List[str]],
    path: Path,
    cell: int = 160,
) -> Path:
    """Rows of ``original | full | protected``, each with the VLP's top-1 caption
    (green when it is the image's own caption, red otherwise)."""
    columns = list(images)
    rows = len(true_captions)
    font = ImageFont.load_default()
    wrapped = {
        name: [wrap_text(top1[name][r], font, cell - 2 * _MARGIN) for r in range(rows)]
        for name in columns
    }
    # Every row is as tall as its longest caption needs: nothing is clipped.
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + 2
    heights = [
        max(len(wrapped[name][r]) for name in columns) * line_height + 2 * _MARGIN
        for r in range(rows)
    ]
    grid = Image.new(
        "RGB", (cell * len(columns), sum(heights) + rows * cell + 20), "white"
    )
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(columns):
        draw.text((c * cell + 4, 4), name, fill="black", font=font)
    top = 20
    for r in range(rows):
        for c, name in enumerate(columns):
            array = images[name][r].clamp(0, 1).mul(255).round().byte()
            tile = Image.fromarray(array.permute(1, 2, 0).numpy())
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (c * cell, top))
            guess = top1[name][r]
            colour = (0, 120, 0) if guess == true_captions[r] else (190, 0, 0)
            for i, line in enumerate(wrapped[name][r]):
                xy = (c * cell + _MARGIN, top + cell + _MARGIN + i * line_height)
                draw.text(xy, line, fill=colour, font=font)
        top += cell + heights[r]
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
