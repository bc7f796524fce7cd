"""Tests of compressai_psic.train.checkpoints: resuming a run, and the
sha256-named state dict it exports."""

from __future__ import annotations

import pytest
import torch

from compressai_psic import load_checkpoint, zoo
from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.train import (
    CHECKPOINT_NAME,
    LOG_FILE_NAME,
    export_state_dict,
    main,
)

from .helpers import FAST, TINY


def test_resume_continues_the_step_count(stage1, flickr_root, tmp_path):
    save_dir, _ = stage1
    resumed = main(
        ["-d", str(flickr_root), "--save-dir", str(tmp_path), *TINY]
        + ["--checkpoint", str(save_dir / CHECKPOINT_NAME), *FAST[:-5]]
        + ["--max-steps", "4", "--no-cuda"]
    )
    assert resumed["step"] == 4 and resumed["epoch"] == 1
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"]) == (4, 1)
    adam_steps = {int(s["step"]) for s in checkpoint["optimizer"]["state"].values()}
    # Trigger weights skip the steps whose batch drew only full-path samples
    # (their bias is exactly zero there), so they may lag behind.
    assert max(adam_steps) == 4
    assert checkpoint["lr_scheduler"]["last_epoch"] == 2
    assert "Resumed" in (tmp_path / LOG_FILE_NAME).read_text()


def test_export_state_dict(tmp_path):
    net = zoo.bmshj2018_factorized(1, N=16, M=24)
    projection = net.trigger_proj["g_s-4"].weight
    with torch.no_grad():
        projection.normal_()
    path = export_state_dict(net, tmp_path, "demo")
    assert path.parent == tmp_path
    assert path.name == f"demo-{sha256_file(path)[:8]}.pth.tar"
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.trigger_proj["g_s-4"].weight, projection)
    x = torch.rand(1, 3, 32, 32)
    strings = loaded.compress(x)  # the exported CDFs are ready to use
    decoded = loaded.decompress(strings["strings"], strings["shape"])["x_hat"]
    assert decoded.shape == x.shape
    with pytest.raises(ValueError, match="file stem"):
        export_state_dict(net, tmp_path, "a/b")


def test_export_state_dict_keeps_the_affine_modulation(tmp_path):
    net = zoo.bmshj2018_factorized(1, N=16, M=24, modulation="affine")
    with torch.no_grad():
        net.trigger_proj["g_s-4"].weight.normal_()
    path = export_state_dict(net, tmp_path, "affine")
    state = torch.load(path, weights_only=True)
    assert state["trigger_proj.g_s-4._extra_state"] == {"modulation": "affine"}
    assert load_checkpoint(path).modulation == "affine"
