"""``psic`` errors: one line ``psic: error: ...`` on stderr, exit status 2, for
malformed and crafted files, wrong models, bad inputs and options."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from compressai_psic.io import container
from compressai_psic.io.files import file_sha256

from .helpers import (
    RANDOM,
    assert_one_line_error,
    corrupt,
    decoded,
    error_lines,
    rewrite,
    run,
    write_image,
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


def test_model_mismatch_names_both_models(tmp_path, capsys, checkpoints):
    write_image(tmp_path / "in.png", "RGB", 16, 16)
    psic = tmp_path / "x.psic"
    run("compress", tmp_path / "in.png", "-o", psic, "-c", checkpoints[0])
    sha = [file_sha256(p) for p in checkpoints]
    capsys.readouterr()

    assert run("decompress", psic, "-o", tmp_path / "o.png", "-c", checkpoints[1]) == 2
    assert_one_line_error(capsys, "model mismatch", sha[0][:12], sha[1][:12])

    assert run("decompress", psic, "-o", tmp_path / "o.png") == 2
    assert_one_line_error(capsys, "--checkpoint", sha[0][:12])

    zoo_file = tmp_path / "zoo.psic"
    run("compress", tmp_path / "in.png", "-o", zoo_file, *RANDOM)
    capsys.readouterr()
    assert (
        run("decompress", zoo_file, "-o", tmp_path / "o.png", "-c", checkpoints[0]) == 2
    )
    assert_one_line_error(capsys, "model mismatch", "random init, seed 0", sha[0][:12])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--arch", "nope", "--random-init"], "unknown architecture"),
        (["--quality", "9", "--random-init"], "quality"),
        (["--quality", "7", "--arch", "cheng2020-anchor", "--random-init"], "quality"),
        ([], "no PSIC weights are published"),  # none in the (empty) manifest
        (["--checkpoint", "missing.pth", "--quality", "2"], "--quality"),
        (["--checkpoint", "missing.pth"], "missing.pth"),
        (["--seed", "3"], "--random-init"),
        (["--random-init", "--seed", "-1"], "--seed"),
    ],
)
def test_model_selection_errors(tmp_path, capsys, argv, fragment):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *argv) == 2
    assert_one_line_error(capsys, fragment)
    assert not (tmp_path / "x.psic").exists()


def test_missing_weights_name_the_offline_options(tmp_path, capsys, packaged_manifest):
    write_image(tmp_path / "photo.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "photo.png", "-o", tmp_path / "p.psic") == 2
    assert_one_line_error(
        capsys, "no PSIC weights", "--model demo-psic", "--random-init"
    )
    assert run("compress", tmp_path / "photo.png", "--model", "nope") == 2
    assert_one_line_error(capsys, "unknown codec 'nope'", "demo-psic")
    argv = ("compress", tmp_path / "photo.png", "--model", "demo-psic", "-q", "2")
    assert run(*argv) == 2
    assert_one_line_error(capsys, "--model brings its own weights", "--quality")


def test_malformed_manifest_is_one_line(tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"models": [3]}', encoding="utf-8")
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(manifest))
    write_image(tmp_path / "photo.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "photo.png") == 2
    assert_one_line_error(capsys, "entry 0 is a int, not an object")


def test_no_note_before_an_error(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "in.png", "--random-init", "--quality", "9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("psic: error:"), err


def test_input_errors(tmp_path, capsys):
    assert run("compress", tmp_path / "missing.png", *RANDOM) == 2
    assert_one_line_error(capsys, "missing.png")
    (tmp_path / "fake.png").write_text("text")
    assert run("compress", tmp_path / "fake.png", *RANDOM) == 2
    assert_one_line_error(capsys, "not an image")
    assert run("decompress", tmp_path / "missing.psic") == 2
    assert_one_line_error(capsys, "missing.psic")


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


def test_unknown_output_suffix(valid_psic, capsys):
    capsys.readouterr()
    assert run("decompress", valid_psic, "-o", valid_psic.with_name("o.xyz")) == 2
    assert_one_line_error(capsys, "suffix")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable(valid_psic, capsys):
    capsys.readouterr()
    assert run("decompress", valid_psic, "--device", "cuda") == 2
    assert_one_line_error(capsys, "CUDA")


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "gpu", "cpu:0"])
def test_device_is_validated(valid_psic, capsys, device):
    assert (
        run(
            "decompress",
            valid_psic,
            "-o",
            valid_psic.with_name("o.png"),
            "--device",
            device,
        )
        == 2
    )
    assert_one_line_error(capsys, f"invalid --device '{device}'", "cuda:N")
    write_image(valid_psic.with_name("in2.png"), "RGB", 8, 8)
    assert (
        run("compress", valid_psic.with_name("in2.png"), "--device", device, *RANDOM)
        == 2
    )
    assert_one_line_error(capsys, "allowed cpu, cuda")


def test_pixel_limit_is_shared_by_compress_and_decompress(valid_psic, capsys):
    from compressai_psic.models import guard as decode_guard

    default = decode_guard.MAX_DECODE_PIXELS
    write_image(valid_psic.with_name("big.png"), "RGB", 65, 64)
    argv = (
        "compress",
        valid_psic.with_name("big.png"),
        "-o",
        valid_psic.with_name("b.psic"),
    )
    assert run(*argv, *RANDOM, "--max-pixels", "4096") == 2
    assert_one_line_error(capsys, "pads to 64x128 = 8192 pixels", "--max-pixels")
    assert run(*argv, *RANDOM, "--max-pixels", "-1") == 2
    assert_one_line_error(capsys, "--max-pixels must be >= 0")
    assert run(*argv, *RANDOM, "--max-pixels", "0") == 0
    capsys.readouterr()
    out = ("-o", valid_psic.with_name("b.png"))
    assert (
        run("decompress", valid_psic.with_name("b.psic"), *out, "--max-pixels", "8191")
        == 2
    )
    assert_one_line_error(capsys, "8192 pixels", "over the limit of 8191")
    assert (
        run("decompress", valid_psic.with_name("b.psic"), *out, "--max-pixels", "8192")
        == 0
    )
    assert decode_guard.MAX_DECODE_PIXELS == default  # restored after each run


@pytest.mark.parametrize("name", ["cuda", "cuda:1", "auto"])
def test_a_gpu_device_makes_the_convolutions_repeatable(monkeypatch, name):
    # The flags are process-wide: set them back after the test.
    from compressai_psic.cli.arguments import resolve_device

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device(name) == ("cuda" if name == "auto" else name)
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("name", ["cpu", "auto"])
def test_a_cpu_device_leaves_the_cudnn_flags_alone(monkeypatch, name):
    from compressai_psic.cli.arguments import resolve_device

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(name) == "cpu"
    assert torch.backends.cudnn.deterministic is False
    assert torch.backends.cudnn.benchmark is True
