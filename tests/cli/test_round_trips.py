"""``psic compress`` then ``psic decompress``: sizes, headers, the decode the
library gives, every path, the output names (quality-1 zoo models with random
weights, tiny checkpoints, small generated images)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from compressai_psic import load_checkpoint, zoo
from compressai_psic.io import container
from compressai_psic.io.files import file_sha256

from .helpers import (
    RANDOM,
    decoded,
    error_lines,
    random_rgb,
    ready,
    reference_decode,
    run,
    write_image,
)


@pytest.mark.parametrize(
    "mode, height, width, suffix",
    [
        ("RGB", 40, 57, ".png"),
        ("RGBA", 33, 21, ".png"),
        ("L", 1, 1, ".png"),
        ("P", 17, 64, ".png"),
        ("I;16", 23, 45, ".png"),
        ("I;16", 9, 70, ".tif"),
        ("RGB", 64, 64, ".jpg"),
        ("RGB", 50, 3, ".webp"),
        ("CMYK", 31, 29, ".tif"),
    ],
)
def test_round_trip_keeps_size(tmp_path, capsys, mode, height, width, suffix):
    source = write_image(tmp_path / f"in{suffix}", mode, height, width)
    assert run("compress", source, "-o", tmp_path / "x.psic", *RANDOM) == 0
    out = capsys.readouterr()
    assert "bpp" in out.out
    if mode == "RGBA":
        assert "psic: warning:" in out.err and "alpha" in out.err
    assert run("decompress", tmp_path / "x.psic", "-o", tmp_path / "out.png") == 0
    assert decoded(tmp_path / "out.png").shape == (height, width, 3)


def test_cli_matches_library_decode(tmp_path):
    """Real zoo sizes: the decoder rebuilds the seeded weights and crops back."""
    image = random_rgb(40, 57, seed=5)
    Image.fromarray(image).save(tmp_path / "in.png")
    assert run("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *RANDOM) == 0
    assert run("decompress", tmp_path / "x.psic", "-o", tmp_path / "out.png") == 0
    torch.manual_seed(0)  # --seed defaults to 0
    model = ready(zoo.bmshj2018_hyperprior(1, metric="mse"))
    assert model.g_a[0].out_channels == 128  # zoo quality 1, not a tiny model
    expected = reference_decode(model, image, "protected")
    assert np.array_equal(decoded(tmp_path / "out.png"), expected)


def test_header_records_model_and_size(tmp_path):
    write_image(tmp_path / "in.png", "RGB", 40, 57)
    argv = ["compress", tmp_path / "in.png", "-o", tmp_path / "x.psic"]
    assert run(*argv, "--random-init", "-q", "2", "-m", "ms-ssim", "--seed", "9") == 0
    header = container.read(tmp_path / "x.psic")
    assert (header.architecture, header.quality, header.metric, header.seed) == (
        "bmshj2018-hyperprior",
        2,
        "ms-ssim",
        9,
    )
    assert (header.height, header.width) == (40, 57)
    assert header.shape == (1, 1)  # 64x64 after padding, /64
    assert header.checkpoint_sha256 is None


@pytest.mark.parametrize(
    "arch", ["bmshj2018-factorized", "mbt2018", "cheng2020-anchor"]
)
def test_other_architectures(tmp_path, arch):
    write_image(tmp_path / "in.png", "RGB", 20, 37)
    argv = ["compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", "-a", arch]
    assert run(*argv, *RANDOM) == 0
    assert container.read(tmp_path / "x.psic").architecture == arch
    assert run("decompress", tmp_path / "x.psic", "-o", tmp_path / "o.png") == 0
    assert decoded(tmp_path / "o.png").shape == (20, 37, 3)


def test_checkpoint_protected_full_and_both(tmp_path, checkpoints):
    image = random_rgb(30, 41, seed=3)
    Image.fromarray(image).save(tmp_path / "in.png")
    psic = tmp_path / "x.psic"
    assert run("compress", tmp_path / "in.png", "-o", psic, "-c", checkpoints[0]) == 0
    header = container.read(psic)
    assert header.checkpoint_sha256 == file_sha256(checkpoints[0])
    assert header.quality is None and header.seed is None

    assert run("decompress", psic, "-o", tmp_path / "p.png", "-c", checkpoints[0]) == 0
    argv = ["decompress", psic, "-c", checkpoints[0]]
    assert run(*argv, "-o", tmp_path / "f.png", "--full") == 0
    assert run(*argv, "-o", tmp_path / "b.png", "--both") == 0

    model = ready(load_checkpoint(checkpoints[0]))
    protected = reference_decode(model, image, "protected")
    full = reference_decode(model, image, "full")
    assert not np.array_equal(protected, full)
    assert np.array_equal(decoded(tmp_path / "p.png"), protected)
    assert np.array_equal(decoded(tmp_path / "f.png"), full)
    # --both decodes the two from one entropy decoding; same pixels.
    assert np.array_equal(decoded(tmp_path / "b_protected.png"), protected)
    assert np.array_equal(decoded(tmp_path / "b_full.png"), full)
    assert not (tmp_path / "b.png").exists()


def test_demo_codec_round_trip_without_flags_on_decode(
    tmp_path, capsys, packaged_manifest
):
    # The README's first examples: --model demo-psic, and a decode that finds
    # the codec's weights by the sha256 in the header.
    write_image(tmp_path / "photo.png", "RGB", 70, 90)
    assert (
        run(
            "compress",
            tmp_path / "photo.png",
            "-o",
            tmp_path / "p.psic",
            "--model",
            "demo-psic",
        )
        == 0
    )
    assert (
        run("decompress", tmp_path / "p.psic", "-o", tmp_path / "p.png", "--both") == 0
    )
    assert run("info", tmp_path / "p.psic") == 0
    out = capsys.readouterr().out
    assert zoo.manifest_entry(name="demo-psic")["sha256"][:12] in out
    assert decoded(tmp_path / "p_protected.png").shape == (70, 90, 3)
    assert decoded(tmp_path / "p_full.png").shape == (70, 90, 3)


def test_default_outputs_never_replace_files(tmp_path, capsys):
    source = write_image(tmp_path / "photo.png", "RGB", 20, 20)
    original = source.read_bytes()
    assert run("compress", source, *RANDOM) == 0
    assert (tmp_path / "photo.psic").is_file()
    assert run("decompress", tmp_path / "photo.psic", "--both") == 0
    assert (tmp_path / "photo_protected.png").is_file()
    assert (tmp_path / "photo_full.png").is_file()
    assert run("decompress", tmp_path / "photo.psic") == 2
    assert "exists" in error_lines(capsys)[-1]
    assert run("compress", source, *RANDOM) == 2
    assert source.read_bytes() == original


def test_outputs_respect_the_umask(tmp_path):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    old = os.umask(0o002)
    try:
        assert (
            run("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *RANDOM)
            == 0
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.psic").stat().st_mode) == 0o664
