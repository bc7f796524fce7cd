"""Tests of ``psic decompress`` (compressai_psic.cli.decompress): malformed and
crafted files fail in one line without a NaN image, output suffixes."""

from __future__ import annotations

import pytest

from compressai_psic.io import container

from .helpers import (
    assert_one_line_error,
    corrupt,
    decoded,
    error_lines,
    rewrite,
    run,
)


@pytest.mark.parametrize("how", ["bit-flip", "truncated", "magic", "trailing", "empty"])
def test_malformed_files_exit_2_in_one_line(valid_psic, capsys, how):
    path = corrupt(valid_psic, how)
    capsys.readouterr()
    assert run("decompress", path, "-o", valid_psic.with_name("o.png")) == 2
    assert_one_line_error(capsys)
    assert run("info", path) == 2
    assert_one_line_error(capsys)


def test_declared_size_over_bomb_limit(valid_psic, capsys):
    path = rewrite(valid_psic, height=65535, width=65535)
    capsys.readouterr()
    assert run("decompress", path, "-o", valid_psic.with_name("o.png")) == 2
    assert_one_line_error(capsys, "a 65535x65535 image", "over the limit")


def test_latent_shape_larger_than_image(valid_psic, capsys):
    path = rewrite(valid_psic, shape=(1 << 20, 1 << 20))
    capsys.readouterr()
    assert run("decompress", path, "-o", valid_psic.with_name("o.png")) == 2
    assert_one_line_error(capsys, "latent shape")


def test_garbage_strings_with_valid_checksum(valid_psic, capsys):
    header = container.read(valid_psic)
    path = rewrite(valid_psic, strings=[[b""] for _ in header.strings])
    capsys.readouterr()
    code = run("decompress", path, "-o", valid_psic.with_name("o.png"))
    # Empty strings used to reach (and crash) CompressAI's rANS decoder.
    assert code == 2
    assert_one_line_error(capsys, "corrupted bitstream", "at least 8")


def test_corrupted_payloads_exit_2_without_nan_images(valid_psic, capsys):
    header = container.read(valid_psic)
    y, z = header.strings
    out = valid_psic.with_name("o.png")
    for strings in ([z, y], [[y[0][:5]], z], [y]):
        path = rewrite(valid_psic, strings=strings)
        code = run("decompress", path, "-o", out, "-f")
        if code == 0:  # swapped strings can look valid: then the image is finite
            assert decoded(out).shape == (12, 12, 3)
        else:
            assert code == 2
            (line,) = error_lines(capsys)
            # Refused by the guard, or decoded to other symbols than the
            # encoder's (the symbol digest), never a NaN image.
            assert "corrupted bitstream" in line or "not the encoder's" in line


def test_unknown_output_suffix(valid_psic, capsys):
    capsys.readouterr()
    assert run("decompress", valid_psic, "-o", valid_psic.with_name("o.xyz")) == 2
    assert_one_line_error(capsys, "suffix")
