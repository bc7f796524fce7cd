"""Tests of compressai_psic.train.logs: the log lines, TensorBoard when there is
one, and a single line when there is none."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.train import (
    main,
)


class RecordingWriter:
    def __init__(self):
        self.scalars, self.images, self.closed = {}, {}, False

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_image(self, tag, image, step):
        self.images[tag] = image

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_rate_distortion_only_with_tensorboard(tmp_path, monkeypatch):

    for split, count in (("train", 4), ("test", 2)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(count):
            pixels = torch.randint(0, 256, (40, 40, 3), dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "data" / split / f"{i}.png")
    writer = RecordingWriter()
    monkeypatch.setattr("compressai_psic.train.loop._summary_writer", lambda d: writer)
    result = main(
        ["-d", str(tmp_path / "data"), "--dataset-format", "imagefolder"]
        + ["-m", "bmshj2018-factorized", "--N", "16", "--M", "24"]
        + ["--patch-size", "32", "32", "--lambda-vlp", "0", "--batch-size", "2"]
        + ["--test-batch-size", "2", "-n", "0", "--max-steps", "2", "--no-cuda"]
        + ["--save-dir", str(tmp_path / "run"), "--export", "mine"]
    )
    assert "vlp_loss" not in result["train"]
    assert {"train/loss", "train/bpp_loss", "val/loss", "val/psnr_protected"} <= set(
        writer.scalars
    )
    (grid,) = writer.images.values()
    assert grid.shape[0] == 3 and grid.shape[1] > 3 * 32  # three rows of images
    assert writer.closed
    export = result["export"]
    assert export.name == f"mine-{sha256_file(export)[:8]}.pth.tar"
    state = torch.load(export, weights_only=True)
    assert "optimizer" not in state and "g_s.0.weight" in state


def test_missing_tensorboard_is_said_once_in_the_log(monkeypatch, caplog):
    import builtins

    from compressai_psic.train.logs import _summary_writer

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with caplog.at_level("WARNING", logger="compressai_psic.train"):
        assert _summary_writer(Path("unused")) is None
    assert [r.message for r in caplog.records if "tensorboard" in r.message]


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
