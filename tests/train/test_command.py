"""Tests of the training command's entry points (compressai_psic.train.command,
``python -m compressai_psic.train``, tools/train.py): one-line errors, a help
that loads no torch."""

from __future__ import annotations

import runpy
import sys

import pytest
from PIL import Image

from compressai_psic.train.command import cli

from ..helpers import ROOT, modules_loaded_by


def test_tools_wrapper_is_the_same_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sys_argv = sys.argv
        try:
            sys.argv = ["tools/train.py", "--help"]
            runpy.run_path(str(ROOT / "tools" / "train.py"), run_name="__main__")
        finally:
            sys.argv = sys_argv
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--stage2-params" in out and "--clip_max_norm" in out


def test_python_m_runs_the_package(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["compressai_psic.train", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("compressai_psic.train", run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m compressai_psic.train" in out and "--stage2-params" in out


def test_flat_image_folder_is_one_line(tmp_path, capsys):
    for i in range(2):
        Image.new("RGB", (64, 64), (i * 90, 30, 60)).save(tmp_path / f"{i}.png")
    argv = ["-d", str(tmp_path), "--dataset-format", "imagefolder"]
    status = cli(argv + ["--lambda-vlp", "0", "--epochs", "1", "--no-cuda"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("compressai_psic.train: error:")
    assert "has no 'train' folder" in err and "CompressAI's layout" in err


def test_training_help_loads_no_torch():
    # The parser and its choices come from modules free of torch: --help and
    # usage errors answer at once; the training machinery loads after parsing.
    code = (
        "from compressai_psic.train.command import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0"
    )
    assert modules_loaded_by(code) == []
