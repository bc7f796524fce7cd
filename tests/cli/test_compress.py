"""Tests of ``psic compress`` (compressai_psic.cli.compress): the images it
refuses, its warnings, and its per-file size and bpp lines."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from .helpers import (
    RANDOM,
    assert_one_line_error,
    run,
    write_image,
)


def test_folder_compress_warns_only_about_files_it_writes(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "big.png", "RGBA", 96, 96)
    write_image(images / "small.png", "RGBA", 8, 8)
    capsys.readouterr()
    argv = ["compress", images, "-o", tmp_path / "out", "--max-pixels", "4096"]
    assert run(*argv, *RANDOM, "--quiet") == 2
    err = capsys.readouterr().err
    assert "big.png: 96x96 pads to" in err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "small.png: alpha channel dropped" in warnings[0]


def test_folder_mode_prints_size_and_bpp_per_file(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", "RGB", 16, 24)
    write_image(images / "b.png", "RGB", 20, 12)
    assert run("compress", images, "-o", tmp_path / "enc", *RANDOM) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, pixels in (("a", 16 * 24), ("b", 20 * 12)):
        (line,) = [x for x in lines if x.startswith(str(images / f"{name}.png"))]
        size = (tmp_path / "enc" / f"{name}.psic").stat().st_size
        assert f"{size} bytes, {size * 8 / pixels:.4f} bpp" in line


def test_decompression_bomb_image_refused(tmp_path, capsys):
    # A PNG header declaring 60000 x 60000 pixels, over twice Pillow's limit.
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    idat = zlib.compress(b"")
    chunk += struct.pack(">I", len(idat)) + b"IDAT" + idat
    chunk += struct.pack(">I", zlib.crc32(b"IDAT" + idat) & 0xFFFFFFFF)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    assert run("compress", tmp_path / "bomb.png", *RANDOM) == 2
    assert_one_line_error(capsys, "too large")


def test_non_finite_image_is_refused_without_hanging(tmp_path, capsys):
    values = np.full((8, 8), 0.5, dtype=np.float32)
    values[3, 3] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    assert run("compress", tmp_path / "nan.tif", *RANDOM) == 2
    assert_one_line_error(capsys, "NaN or infinite")
