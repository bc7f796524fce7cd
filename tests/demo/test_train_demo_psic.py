"""Tests of tools/train_demo_psic.py, the retraining tool of the demo codec:
its training commands, targets and manifest updates."""

from __future__ import annotations

import json

import pytest

from compressai_psic.demo import DEMO_MODEL_NAME
from compressai_psic.train import parse_args as parse_train_args

from ..helpers import load_tool

train_demo_psic = load_tool("train_demo_psic")


@pytest.mark.parametrize("stage", [1, 2])
def test_stage_commands_parse_with_the_training_tool(stage, tmp_path):
    init = tmp_path / "stage1" / "checkpoint_best_loss.pth.tar" if stage == 2 else None
    argv = train_demo_psic.stage_argv(
        stage, tmp_path / f"stage{stage}", train_demo_psic.RECIPE, init
    )
    args = parse_train_args(argv)
    own = train_demo_psic.RECIPE[f"stage{stage}"]
    assert args.stage == stage
    assert args.dataset_format == "scenes"
    assert args.vlp == ["demo"]
    assert tuple(args.patch_size) == (64, 64)
    assert args.lambda_full == own["lambda_full"]
    assert args.lambda_prot == own["lambda_prot"]
    assert args.lambda_vlp == own["lambda_vlp"]
    assert args.learning_rate == own["learning_rate"]
    assert args.batch_size == own["batch_size"]
    assert args.cuda is False
    if stage == 1:
        assert args.model == "bmshj2018-hyperprior" and args.init is None
        assert (args.N, args.M) == (64, 96)
    else:
        assert args.init == str(init)
        assert args.export == DEMO_MODEL_NAME
        assert args.stage2_params == own["stage2_params"]
        assert (args.plan, args.modulation) == (own["plan"], own["modulation"])
        assert args.trigger_learning_rate == own["trigger_learning_rate"]
        assert args.lambda_semantic == own["lambda_semantic"]
        assert args.lambda_lowfreq == own["lambda_lowfreq"]
        assert args.lambda_common == own["lambda_common"]
        assert args.eot == own["eot"]


def _metrics(**changes):
    """A 500-way summary that meets every target (values chosen per target)."""
    train = {
        "original": {"i2t": 0.93, "t2i": 0.93},
        "full": {"i2t": 0.92, "t2i": 0.93},
        "protected": {"i2t": 0.02, "t2i": 0.05},
        "protected_greyworld": {"i2t": 0.08, "t2i": 0.09},
        "protected_affine_fit": {"i2t": 0.1, "t2i": 0.1},
        "protected_jpeg75": {"i2t": 0.03, "t2i": 0.06},
    }
    other = {
        "original": {"i2t": 0.96, "t2i": 0.96},
        "full": {"i2t": 0.95, "t2i": 0.95},
        "protected": {"i2t": 0.48, "t2i": 0.3},
    }
    metrics = {
        "chance": 0.002,
        "psnr": {"full": 29.6, "protected": 27.7},
        "ms_ssim": {"full": 0.96, "protected": 0.945},
        "stage1_psnr": 29.8,
        "common_share": 0.4,
        "vlps": [
            {"name": "demo-vlp", "role": "train", "recall": train},
            {"name": "eval-vlp-rn", "role": "eval", "recall": other},
        ],
    }
    for path, value in changes.items():
        *keys, last = path.split("/")
        node = metrics
        for key in keys:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return metrics


def test_check_targets_has_every_target_of_the_issue():
    targets = train_demo_psic.check_targets(_metrics())
    assert all(t["met"] for t in targets.values()), targets
    assert targets["full_psnr"]["limit"] == pytest.approx(29.5)
    assert targets["protected_psnr"]["limit"] == pytest.approx(27.6)
    assert targets["protected_ms_ssim"]["limit"] == pytest.approx(0.94)
    assert targets["common_share"]["limit"] == 0.5
    assert targets["demo-vlp/protected/i2t"]["limit"] == pytest.approx(0.052)
    assert targets["demo-vlp/protected_affine_fit/t2i"]["limit"] == pytest.approx(0.102)
    assert targets["demo-vlp/full/t2i"]["limit"] == pytest.approx(0.91)
    assert targets["eval-vlp-rn/protected/i2t"]["limit"] == pytest.approx(0.48)
    # A VLP the codec was not trained against gets the transfer target only.
    assert "eval-vlp-rn/protected_jpeg75/i2t" not in targets
    assert len(targets) == 4 + 2 * (1 + 4) + 2 * (1 + 1)


@pytest.mark.parametrize(
    "change, missed",
    [
        ({"psnr/full": 29.4}, "full_psnr"),
        ({"psnr/protected": 27.5}, "protected_psnr"),
        ({"ms_ssim/protected": 0.93}, "protected_ms_ssim"),
        ({"common_share": 0.6}, "common_share"),
        ({"vlps/0/recall/protected_greyworld": {"i2t": 0.2, "t2i": 0}}, None),
        ({"vlps/1/recall/protected": {"i2t": 0.5, "t2i": 0.1}}, None),
        ({"vlps/0/recall/full": {"i2t": 0.9, "t2i": 0.93}}, None),
    ],
)
def test_check_targets_flags_each_miss(change, missed):
    targets = train_demo_psic.check_targets(_metrics(**change))
    failed = sorted(k for k, t in targets.items() if not t["met"])
    expected = {
        "vlps/0/recall/protected_greyworld": "demo-vlp/protected_greyworld/i2t",
        "vlps/1/recall/protected": "eval-vlp-rn/protected/i2t",
        "vlps/0/recall/full": "demo-vlp/full/i2t",
    }
    assert failed == [missed or expected[next(iter(change))]]


def test_update_manifest_replaces_only_its_entry(tmp_path):
    other = {"name": "demo-vlp", "file": "demo-vlp-00000000.pth.tar", "sha256": "0"}
    old = {"name": DEMO_MODEL_NAME, "file": "demo-psic-11111111.pth.tar"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [other, old]}))
    new = {"name": DEMO_MODEL_NAME, "file": "demo-psic-22222222.pth.tar"}
    replaced = train_demo_psic.update_manifest(tmp_path, new)
    assert replaced == old["file"]
    models = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert models == [other, new]
    # A first entry is appended.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert train_demo_psic.update_manifest(fresh, new) is None
    assert json.loads((fresh / "manifest.json").read_text())["models"] == [new]
