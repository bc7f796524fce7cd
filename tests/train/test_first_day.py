"""Training on your own images offline: one-line errors instead of tracebacks,
defaults that fit the machine, warnings where the data does not fit."""

from __future__ import annotations

import argparse
import os
import urllib.error
import warnings

import pytest
import torch
from PIL import Image

from compressai_psic.datasets.base import EnsureMinSize
from compressai_psic.train import build_parser, parse_args
from compressai_psic.train.command import cli
from compressai_psic.train.criterion import build_criterion
from compressai_psic.train.model import _zoo_init

from ..helpers import modules_loaded_by


def test_flat_image_folder_is_one_line(tmp_path, capsys):
    for i in range(2):
        Image.new("RGB", (64, 64), (i * 90, 30, 60)).save(tmp_path / f"{i}.png")
    argv = ["-d", str(tmp_path), "--dataset-format", "imagefolder"]
    status = cli(argv + ["--lambda-vlp", "0", "--epochs", "1", "--no-cuda"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("compressai_psic.train: error:")
    assert "has no 'train' folder" in err and "CompressAI's layout" in err


def test_flat_folder_names_dataset_format_before_any_model(tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "0.png")
    with pytest.raises(SystemExit) as refused:
        parse_args(["-d", str(tmp_path), "--no-cuda"])
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "has no captions.txt" in line
    assert "--dataset-format imagefolder --lambda-vlp 0" in line
    assert "--dataset-format list" in line


def test_refusals_are_one_line_without_the_usage_text(tmp_path, capsys):
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"an earlier run")
    argvs = [
        ["--dataset-format", "scenes", "--save-dir", str(tmp_path)],
        ["--dataset-format", "scenes", "--epochs", "0"],
        ["--no-such-flag"],
    ]
    for argv in argvs:
        with pytest.raises(SystemExit) as refused:
            parse_args(argv + ["--no-cuda"])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "usage:" not in err and err.endswith("(see --help)\n")


def test_progress_bar_shows_on_a_terminal_without_a_size(monkeypatch, capsys):
    import shutil

    from compressai_psic.train.loop import _progress

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback: (0, 0))
    assert list(_progress(range(3), True, desc="epoch 0")) == [0, 1, 2]
    assert "epoch 0: 100%" in capsys.readouterr().err
    assert list(_progress(range(3), False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_offline_vlp_tag_fails_at_once_in_one_line(monkeypatch, tmp_path, capsys):
    import socket

    import open_clip

    from compressai_psic.vlp import open_clip as adapter

    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was tried without a network")

    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(open_clip, "create_model", no_download)
    with pytest.raises(FileNotFoundError) as info:
        adapter._create_open_clip_model(
            open_clip, "ViT-B-32", "openai", str(tmp_path), "fp32"
        )
    message = str(info.value)
    assert "huggingface.co cannot be reached: Name or service not known" in message
    assert "\n" not in message
    assert capsys.readouterr().err == ""


def test_downloads_print_no_retry_noise(capsys):
    import logging

    from compressai_psic.vlp.open_clip import _quiet_downloads

    root = logging.getLogger()
    handlers = list(root.handlers)
    with _quiet_downloads():
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s")
        logging.error("Failed to download weights")  # open_clip's own report
    assert root.handlers == handlers
    captured = capsys.readouterr()
    assert captured.err == captured.out == ""


def test_offline_zoo_init_names_the_way_out(monkeypatch):
    import compressai.zoo.image as cai_image

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cai_image, "load_state_dict_from_url", offline)
    with pytest.raises(ValueError) as info:
        _zoo_init("zoo:bmshj2018-hyperprior:1", "mse")
    message = str(info.value)
    assert "cannot download CompressAI's bmshj2018-hyperprior weights" in message
    assert "name resolution" in message and "--init /path/to/" in message


def _vlp_error(monkeypatch, error: Exception) -> str:
    """The message of the training tool's criterion when ``build_vlp`` fails."""
    import compressai_psic.vlp as vlp

    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(vlp, "build_vlp", offline)
    args = argparse.Namespace(
        lambda_vlp=0.0009,
        vlp=["open_clip:ViT-B-32:openai"],
        vlp_cache_dir=None,
        vlp_precision="fp32",
    )
    with pytest.raises(ValueError) as info:
        build_criterion(args, torch.device("cpu"))
    return str(info.value)


def test_vlp_that_cannot_load_names_the_shipped_ones(monkeypatch):
    message = _vlp_error(
        monkeypatch,
        RuntimeError("Failed to download file (open_clip_pytorch_model.bin)"),
    )
    assert "cannot load --vlp open_clip:ViT-B-32:openai" in message
    assert "--vlp demo or train-ensemble" in message
    assert "eval-rn" not in message  # evaluation VLPs are never trained against
    assert "--lambda-vlp 0" in message and "\n" not in message


def test_long_vlp_errors_are_not_cut(monkeypatch):
    reason = "x" * 400 + " the end of the reason"
    assert f"({reason})" in _vlp_error(monkeypatch, OSError(reason))


def test_defaults_fit_the_machine_and_help_lists_shipped_vlps():
    args = parse_args(["--dataset-format", "scenes", "--lambda-vlp", "0"])
    assert args.num_workers == min(4, os.cpu_count() or 1)
    text = " ".join(build_parser().format_help().split())
    assert "'demo' or 'train-ensemble'" in text
    assert "eval-rn/eval-vit are refused" in text


def test_small_images_warn_once_that_they_are_upscaled():
    ensure = EnsureMinSize((256, 256))
    small = Image.new("RGB", (128, 96))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ensure(small).size == (342, 256)
        ensure(small)
        ensure(Image.new("RGB", (300, 300)))
    assert len(caught) == 1
    assert "smaller than the 256x256 patch" in str(caught[0].message)
    assert "128x96" in str(caught[0].message)


def test_training_help_loads_no_torch():
    # The parser and its choices come from modules free of torch: --help and
    # usage errors answer at once; the training machinery loads after parsing.
    code = (
        "from compressai_psic.train.command import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0"
    )
    assert modules_loaded_by(code) == []


def test_shared_option_values_have_one_home():
    from compressai_psic import datasets, losses, options

    assert datasets.CROP_MODES is options.CROP_MODES
    assert datasets.ON_ERROR is options.ON_ERROR
    assert losses.DEFAULT_TAU is options.DEFAULT_TAU
    assert losses.ENSEMBLE_MODES is options.ENSEMBLE_MODES
    assert losses.FEATURE_STAGES is options.FEATURE_STAGES
    parser = build_parser()
    choices = {a.dest: a.choices for a in parser._actions if a.choices}
    assert choices["ensemble"] == options.ENSEMBLE_MODES
    assert choices["feature_stage"] == options.FEATURE_STAGES


def test_log_lines_go_above_the_progress_bar(monkeypatch, tmp_path):
    import logging

    import tqdm

    from compressai_psic.train import logs

    written = []
    monkeypatch.setattr(
        tqdm.tqdm, "write", classmethod(lambda cls, s, file=None: written.append(s))
    )
    handlers = logs._setup_logging(None, True)
    try:
        logs.logger.info("step %d: loss=%.1f", 50, 1.5)
    finally:
        logs._teardown_logging(handlers)
    assert len(written) == 1 and written[0].endswith("INFO step 50: loss=1.5")
    assert isinstance(handlers[0], logging.StreamHandler)
