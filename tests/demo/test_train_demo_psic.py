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


def _report(recall, num_images=100):
    return {
        "num_images": num_images,
        "recall": {
            variant: {"i2t": {"R@1": i2t}, "t2i": {"R@1": t2i}}
            for variant, (i2t, t2i) in recall.items()
        },
    }


def test_check_targets():
    met = train_demo_psic.check_targets(
        _report(
            {"original": (0.99, 0.99), "full": (0.96, 0.97), "protected": (0.11, 0.02)}
        )
    )
    assert all(t["met"] for t in met.values())
    # Protected text→image is reported against the same bound, not required.
    assert [k for k, t in met.items() if not t["required"]] == ["protected_t2i_R@1"]
    assert met["protected_i2t_R@1"]["limit"] == pytest.approx(0.11)
    assert met["full_t2i_R@1"]["limit"] == pytest.approx(0.96)
    missed = train_demo_psic.check_targets(
        _report(
            {"original": (0.99, 0.99), "full": (0.95, 0.99), "protected": (0.12, 0.3)}
        )
    )
    assert not missed["full_i2t_R@1"]["met"] and missed["full_t2i_R@1"]["met"]
    assert not missed["protected_i2t_R@1"]["met"]
    assert not missed["protected_t2i_R@1"]["met"]


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
