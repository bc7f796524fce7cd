"""The demo's picture: scenes beside their decodes, with the VLP's guesses."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Dict, List, Sequence

from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..evaluation.retrieval import embed_images, embed_texts, similarity

__all__ = ["draw_grid", "top1_captions"]


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
    text_height = 64
    font = ImageFont.load_default()
    grid = Image.new(
        "RGB", (cell * len(columns), rows * (cell + text_height) + 20), "white"
    )
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(columns):
        draw.text((c * cell + 4, 4), name, fill="black", font=font)
    for r in range(rows):
        top = 20 + r * (cell + text_height)
        for c, name in enumerate(columns):
            array = images[name][r].clamp(0, 1).mul(255).round().byte()
            tile = Image.fromarray(array.permute(1, 2, 0).numpy())
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (c * cell, top))
            guess = top1[name][r]
            colour = (0, 120, 0) if guess == true_captions[r] else (190, 0, 0)
            lines = textwrap.wrap(guess, width=cell // 6)[:5]
            draw.multiline_text(
                (c * cell + 3, top + cell + 2), "\n".join(lines), fill=colour, font=font
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
