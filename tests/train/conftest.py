"""Fixtures of the training tool's tests."""

from __future__ import annotations

import pytest

from compressai_psic.datasets.scenes import write_split
from compressai_psic.train import main

from .helpers import FAST, TINY


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path, monkeypatch):
    """Each test runs in an empty folder: the default --save-dir (runs/psic) is
    then never a developer's own run, which the tool would refuse to replace."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def flickr_root(tmp_path_factory):
    """A flickr8k-style folder of 8 training and 4 validation scenes."""
    root = tmp_path_factory.mktemp("flickr")
    write_split(root, "train", 8, image_size=64)
    write_split(root, "val", 4, image_size=64)
    return root


@pytest.fixture(scope="session")
def stage1(flickr_root, tmp_path_factory):
    """A two-step stage-1 run of a tiny hyperprior: its folder and result."""
    save_dir = tmp_path_factory.mktemp("stage1")
    argv = ["-d", str(flickr_root), "--save-dir", str(save_dir), *TINY, *FAST]
    result = main(argv)
    return save_dir, result
