"""The demo grid: captions are wrapped to the cell width, never clipped."""

from __future__ import annotations

import torch
from PIL import Image, ImageFont

from compressai_psic.demo.grid import draw_grid, wrap_text

LONG = (
    "three large red circles and two small blue squares at the top left, over a "
    "striped green background with a yellow triangle near the bottom right "
    "corner and a tiny purple star in the middle of the picture "
    "supercalifragilisticexpialidocious_without_any_space_at_all"
)


def test_wrap_text_keeps_every_character_within_the_width():
    font = ImageFont.load_default()
    lines = wrap_text(LONG, font, 154)
    assert len(lines) > 5  # the old grid cut captions at 5 lines
    assert all(font.getlength(line) <= 154 for line in lines)
    assert "".join(lines).replace(" ", "") == LONG.replace(" ", "")
    assert wrap_text("", font, 100) == []
    assert wrap_text("abc", font, 1) == ["a", "b", "c"]  # one character a line


def test_grid_grows_to_fit_long_captions(tmp_path):
    images = {name: torch.rand(2, 3, 32, 32) for name in ("original", "protected")}
    short = {name: ["a red circle", "a blue square"] for name in images}
    long = {name: [LONG, "a blue square"] for name in images}
    truth = ["a red circle", "a blue square"]
    small = draw_grid(images, truth, short, tmp_path / "short.png", cell=160)
    large = draw_grid(images, truth, long, tmp_path / "long.png", cell=160)
    with Image.open(small) as a, Image.open(large) as b:
        assert a.width == b.width == 320
        assert b.height > a.height
