"""Training a keyed shift: refusals before any work, a run that saves its best
validation step, and the decodes it trains on."""

from __future__ import annotations

import json

import pytest
import torch

from compressai_psic import load_checkpoint
from compressai_psic.train import keyed

from ..models.helpers import tiny_zoo_model


def test_refusals_come_before_any_work(tmp_path):
    base = ["--init", "demo-psic", "--save-dir", str(tmp_path / "run")]
    for extra, message in [
        (["--vlp", "eval-rn"], "evaluation VLP"),
        (["--batch-size", "1"], "at least 2"),
        (["--steps", "0"], "--steps must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            keyed.main(base + extra)
    with pytest.raises(ValueError, match="no such file"):
        keyed.main(["--init", str(tmp_path / "missing.pth.tar")])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / keyed.BEST_FILE).write_bytes(b"earlier run")
    with pytest.raises(ValueError, match="-f/--force"):
        keyed.main(base)
    assert (tmp_path / "run" / keyed.BEST_FILE).read_bytes() == b"earlier run"
    assert keyed.cli(base) == 2


def test_keyed_decodes_share_the_full_decode_and_differ_per_key():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    model.make_keyed(noise_channels=4, hidden=8)
    x = torch.rand(2, 3, 64, 64)
    out = keyed.keyed_decodes(model, x, torch.Generator().manual_seed(0), attacked=True)
    assert len(out["protected"]) == 2 and len(out["attacked"]) == 1
    with torch.no_grad():
        reference = model(x, condition="full")["x_hat"].clamp(0, 1)
    assert torch.allclose(out["full"], reference, atol=1e-6)
    assert not torch.equal(out["protected"][0], out["protected"][1])
    out["protected"][0].mean().backward()
    assert model.key_shift.net[0].weight.grad is not None


def test_a_short_run_keeps_its_best_step(tmp_path):
    model = tiny_zoo_model("bmshj2018-hyperprior")
    init = tmp_path / "init.pth.tar"
    torch.save(model.state_dict(), init)
    save = tmp_path / "run"
    summary = keyed.main(
        [
            "--init", str(init), "--vlp", "tiny:0", "--steps", "2", "--val-every", "1",
            "--batch-size", "2", "--train-scenes", "4", "--val-scenes", "4",
            "--noise-channels", "4", "--hidden", "8", "--eot", "none",
            "--max-psnr-drop", "100", "--save-dir", str(save), "--threads", "1",
        ]
    )  # fmt: skip
    assert summary["steps"] == 2 and summary["best"]["step"] in (1, 2)
    rows = [
        json.loads(line) for line in (save / keyed.LOG_FILE).read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"recall", "recall_attacked", "score", "psnr_protected"} <= set(rows[0])
    best = load_checkpoint(save / keyed.BEST_FILE)
    assert best.is_keyed and best.key_shift.noise_channels == 4
    # Everything but the shift is the init's, bit for bit.
    initial = model.state_dict()
    for name, value in best.state_dict().items():
        if not name.startswith("key_shift."):
            assert torch.equal(value, initial[name]), name
