"""Tests of compressai_psic.train.loop: stage-1 and stage-2 runs end to end on a
tiny model, and the progress bar."""

from __future__ import annotations

import torch
from compressai.models import ScaleHyperprior

from compressai_psic import load_checkpoint
from compressai_psic.train import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    LOG_FILE_NAME,
    main,
)

from .helpers import FAST, changed, params

COMPRESSAI_KEYS = ("epoch", "state_dict", "loss", "optimizer", "aux_optimizer")


def test_stage1_writes_loadable_checkpoints(stage1):
    save_dir, result = stage1
    assert result["step"] == 2 and result["epoch"] == 0
    for name in (CHECKPOINT_NAME, BEST_CHECKPOINT_NAME, LOG_FILE_NAME):
        assert (save_dir / name).is_file()
    checkpoint = torch.load(save_dir / CHECKPOINT_NAME, weights_only=True)
    for key in COMPRESSAI_KEYS + ("lr_scheduler", "step", "args", "stage"):
        assert key in checkpoint
    assert checkpoint["architecture"] == "bmshj2018-hyperprior"
    assert checkpoint["stage"] == 1 and checkpoint["step"] == 2
    assert checkpoint["args"]["patch_size"] == [64, 64]
    # update(force=True) ran before saving: the CDF tables are filled.
    assert checkpoint["state_dict"]["entropy_bottleneck._quantized_cdf"].numel() > 0
    net = load_checkpoint(save_dir / BEST_CHECKPOINT_NAME)
    x = torch.rand(1, 3, 64, 64)
    strings = net.compress(x)
    out = net.decompress_multi(strings["strings"], strings["shape"])
    assert [t.shape for t in out["x_hat"]] == [x.shape, x.shape]
    log = (save_dir / LOG_FILE_NAME).read_text()
    for term in ("bpp_loss=", "vlp_loss=", "clean/uncertain=", "epoch 0 val:"):
        assert term in log


def test_stage2_changes_only_synthesis(stage1, flickr_root, tmp_path):
    init = stage1[0] / BEST_CHECKPOINT_NAME
    before = params(load_checkpoint(init))
    result = main(
        ["-d", str(flickr_root), "--save-dir", str(tmp_path), "--init", str(init)]
        + ["--stage", "2", "--paths", "both", "-lr", "1e-3", *FAST]
        + ["--patch-size", "64", "64"]
    )
    assert result["step"] == 2
    after_net = load_checkpoint(result["checkpoint"])
    moved = changed(before, params(after_net))
    groups = after_net.parameter_groups()
    allowed = set(groups["synthesis"]) | set(groups["trigger_projections"])
    assert moved and moved <= allowed
    assert moved & set(groups["synthesis"])
    assert moved & set(groups["trigger_projections"])
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["stage"] == 2 and checkpoint["aux_optimizer"] is None


def test_stage2_triggers_keeps_the_full_decode(flickr_root, tmp_path):
    torch.manual_seed(0)
    base = ScaleHyperprior(N=16, M=24).eval()
    init = tmp_path / "compressai.pth.tar"
    torch.save({"epoch": 3, "state_dict": base.state_dict()}, init)
    result = main(
        ["-d", str(flickr_root), "--save-dir", str(tmp_path / "run")]
        + ["--init", str(init), "--stage", "2", "--stage2-params", "triggers"]
        + ["-lr", "1e-2", "--patch-size", "64", "64", *FAST]
    )
    net = load_checkpoint(result["checkpoint"])
    moved = changed(params(base), params(net))
    projections = set(net.parameter_groups()["trigger_projections"])
    assert not moved  # every base parameter is untouched...
    assert {n for n, p in net.named_parameters() if p.abs().sum() > 0} >= projections
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = base(x)["x_hat"]
        full, protected = net(x, condition=["full", "protected"])["x_hat"]
    assert torch.equal(full, expected)  # ...so the full decode is the base one
    assert not torch.equal(protected, expected)


def test_progress_bar_shows_on_a_terminal_without_a_size(monkeypatch, capsys):
    import shutil

    from compressai_psic.train.loop import _progress

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback: (0, 0))
    assert list(_progress(range(3), True, desc="epoch 0")) == [0, 1, 2]
    assert "epoch 0: 100%" in capsys.readouterr().err
    assert list(_progress(range(3), False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
