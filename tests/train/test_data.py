"""Tests of compressai_psic.train.data: the training loaders, and a broken image
(stop with its name, or skip it on request)."""

from __future__ import annotations

import pytest

from compressai_psic.datasets.scenes import write_split
from compressai_psic.train import (
    CHECKPOINT_NAME,
    LOG_FILE_NAME,
    main,
)

from .helpers import FAST, TINY


@pytest.fixture
def broken_root(tmp_path):
    root = tmp_path / "broken"
    write_split(root, "train", 4, image_size=64)
    write_split(root, "val", 2, image_size=64)
    victim = sorted((root / "Images").glob("train_*.png"))[1]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    return root, victim


def test_broken_image_stops_with_its_name(broken_root, tmp_path):
    root, victim = broken_root
    argv = ["-d", str(root), "--save-dir", str(tmp_path), *TINY, *FAST]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--batch-size", "4"])
    assert exit_info.value.code == 1
    log = (tmp_path / LOG_FILE_NAME).read_text()
    assert victim.name in log and "--on-error skip" in log
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_broken_image_skipped_on_request(broken_root, tmp_path):
    root, victim = broken_root
    result = main(
        ["-d", str(root), "--save-dir", str(tmp_path), "--on-error", "skip"]
        + [*TINY, *FAST]
    )
    assert (result["step"], result["epoch"]) == (2, 1)  # one batch of 4 per epoch
    log = (tmp_path / LOG_FILE_NAME).read_text()
    assert "Skipping unreadable sample" in log and victim.name in log
    assert "1 unreadable training sample(s) skipped so far" in log
