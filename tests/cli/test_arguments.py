"""Tests of compressai_psic.cli.arguments: the shared options (--device,
--max-pixels) and the cuDNN flags a GPU device sets."""

from __future__ import annotations

import pytest
import torch

from .helpers import (
    RANDOM,
    assert_one_line_error,
    run,
    write_image,
)


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
