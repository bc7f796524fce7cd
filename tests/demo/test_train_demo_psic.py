"""Tests of tools/train_demo_psic.py, the retraining tool of the demo codec:
its training commands, targets and manifest updates."""

from __future__ import annotations

import json

import pytest

from compressai_psic.demo import DEMO_MODEL_NAME
from compressai_psic.train import parse_args as parse_train_args
from tools import train_demo_psic


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_stage_commands_parse_with_the_training_tool(stage, tmp_path):
    init = tmp_path / "previous.pth.tar" if stage > 1 else None
    argv = train_demo_psic.stage_argv(
        stage, tmp_path / f"stage{stage}", train_demo_psic.RECIPE, init
    )
    args = parse_train_args(argv)
    own = train_demo_psic.RECIPE[f"stage{stage}"]
    assert args.stage == min(stage, 2)
    assert args.dataset_format == "scenes"
    assert args.vlp == [own.get("vlp", "demo")]
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
        return
    assert args.init == str(init)
    assert args.stage2_params == own["stage2_params"]
    assert args.trigger_learning_rate == own["trigger_learning_rate"]
    assert args.lambda_semantic == own["lambda_semantic"]
    assert args.lambda_lowfreq == own["lambda_lowfreq"]
    assert args.lambda_common == own["lambda_common"]
    assert args.eot == own["eot"]
    if stage == 2:
        assert args.export == f"{DEMO_MODEL_NAME}-stage2"
        assert (args.plan, args.modulation) == (own["plan"], own["modulation"])
    else:
        # Stage 3 hardens the shielded stage-2 codec: its plan and modulation
        # come from the weights, the VLPs are the training ensemble.
        assert args.export == DEMO_MODEL_NAME
        assert args.vlp == ["train-ensemble"]
        assert args.lambda_masked == own["lambda_masked"]
        assert args.lambda_feature == own["lambda_feature"]
        assert args.ensemble == own["ensemble"]
        assert "--plan" not in argv and "--modulation" not in argv


def test_stage3_overrides_are_typed_and_checked():
    recipe = train_demo_psic._with_overrides(
        train_demo_psic.RECIPE, ["lambda_vlp=50", "ensemble=mean"]
    )
    assert recipe["stage3"]["lambda_vlp"] == 50.0
    assert recipe["stage3"]["ensemble"] == "mean"
    assert train_demo_psic.RECIPE["stage3"]["lambda_vlp"] != 50.0  # a copy
    with pytest.raises(ValueError, match="KEY=VALUE"):
        train_demo_psic._with_overrides(train_demo_psic.RECIPE, ["no_such=1"])
    with pytest.raises(ValueError, match="lambda_vlp"):
        train_demo_psic._with_overrides(train_demo_psic.RECIPE, ["lambda_vlp=x"])


def _metrics(**changes):
    """A 500-way summary that meets every target (values chosen per target)."""
    train = {
        "original": {"i2t": 0.93, "t2i": 0.93},
        "full": {"i2t": 0.92, "t2i": 0.93},
        "protected": {"i2t": 0.02, "t2i": 0.05},
    }
    other = {
        "original": {"i2t": 0.96, "t2i": 0.96},
        "full": {"i2t": 0.95, "t2i": 0.95},
        "protected": {"i2t": 0.40, "t2i": 0.3},
    }
    metrics = {
        "chance": 0.002,
        "psnr": {"full": 29.6, "protected": 26.7},
        "ms_ssim": {"full": 0.96, "protected": 0.915},
        "stage1_psnr": 29.8,
        "common_share": 0.4,
        "periodic_peaks": {"2": 1.1, "4": 1.2, "8": 2.9, "16": 1.0},
        "periodic_amplitude": {"2": 0.1, "4": 0.2, "8": 0.9, "16": 0.3},
        "vlps": [
            {
                "name": "demo-vlp",
                "role": "train",
                "recall": train,
                "worst_blind": {"i2t": 0.09, "t2i": 0.1},
            },
            {
                "name": "eval-vlp-rn",
                "role": "eval",
                "recall": other,
                "worst_blind": {"i2t": 0.47, "t2i": 0.45},
                "inversion": {"i2t": 0.7, "t2i": 0.71},
            },
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
    assert targets["protected_psnr"]["limit"] == pytest.approx(26.6)
    assert targets["protected_ms_ssim"]["limit"] == pytest.approx(0.91)
    assert targets["common_share"]["limit"] == 0.5
    assert targets["periodic_amplitude/8px"]["limit"] == 1.0
    assert not any(key.startswith("periodic_peak") for key in targets)
    assert targets["demo-vlp/protected/i2t"]["limit"] == pytest.approx(0.102)
    assert targets["demo-vlp/worst_blind/t2i"]["limit"] == pytest.approx(0.102)
    assert targets["demo-vlp/full/t2i"]["limit"] == pytest.approx(0.90)
    assert targets["eval-vlp-rn/protected/i2t"]["limit"] == pytest.approx(0.48)
    assert targets["eval-vlp-rn/worst_blind/t2i"]["limit"] == pytest.approx(0.48)
    assert targets["eval-vlp-rn/inversion/i2t"]["limit"] == pytest.approx(0.72)
    # The training VLP has no inversion figure here, so no inversion target.
    assert "demo-vlp/inversion/i2t" not in targets
    assert len(targets) == 4 + 4 + 2 * 3 + 2 * 4


@pytest.mark.parametrize(
    "change, missed",
    [
        ({"psnr/full": 29.4}, "full_psnr"),
        ({"psnr/protected": 26.5}, "protected_psnr"),
        ({"ms_ssim/protected": 0.90}, "protected_ms_ssim"),
        ({"common_share": 0.6}, "common_share"),
        ({"periodic_amplitude/8": 1.5}, "periodic_amplitude/8px"),
        ({"vlps/0/worst_blind": {"i2t": 0.2, "t2i": 0}}, "demo-vlp/worst_blind/i2t"),
        ({"vlps/1/recall/protected": {"i2t": 0.5, "t2i": 0.1}}, None),
        ({"vlps/1/inversion": {"i2t": 0.1, "t2i": 0.8}}, None),
        ({"vlps/0/recall/full": {"i2t": 0.89, "t2i": 0.93}}, None),
    ],
)
def test_check_targets_flags_each_miss(change, missed):
    targets = train_demo_psic.check_targets(_metrics(**change))
    failed = sorted(k for k, t in targets.items() if not t["met"])
    expected = {
        "vlps/1/recall/protected": "eval-vlp-rn/protected/i2t",
        "vlps/1/inversion": "eval-vlp-rn/inversion/t2i",
        "vlps/0/recall/full": "demo-vlp/full/i2t",
    }
    assert failed == [missed or expected[next(iter(change))]]


def test_bound_comparison_interpolates_at_the_codec_psnr(tmp_path):
    bound = {
        "num_images": 4,
        "surrogate": ["demo-vlp"],
        "steps": 2,
        "original": {"demo-vlp": {"i2t": 1.0, "t2i": 1.0}},
        "points": [
            {
                "norm": norm,
                "psnr": psnr,
                "recall": {"demo-vlp": {"perturbed": {"i2t": r, "t2i": r}}},
                "worst": {"demo-vlp": {"i2t": w, "t2i": w}},
            }
            for norm in ("linf", "l2")
            for psnr, r, w in ((25.0, 0.2, 0.4), (35.0, 0.8, 1.0))
        ],
    }
    (tmp_path / "bound.json").write_text(json.dumps(bound))
    metrics = _metrics(**{"psnr/protected": 27.5})
    out = train_demo_psic._bound_comparison(tmp_path, metrics)
    row = out["vlps"]["demo-vlp"]["i2t"]
    assert row["bound_linf"] == pytest.approx(0.35)
    assert row["bound_l2_worst_blind"] == pytest.approx(0.55)
    assert row["codec"] == 0.02 and row["codec_worst_blind"] == 0.09
    assert "eval-vlp-rn" not in out["vlps"]  # not measured by the bound
    assert train_demo_psic._bound_comparison(tmp_path / "none", metrics) is None


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


def test_the_recorded_command_retrains_instead_of_reusing_files():
    argv = [
        "--stage1-from", "a.pth.tar", "--stage3-from", "x.pth.tar",
        "--bound-from=b.json", "--threads", "2",
    ]  # fmt: skip
    assert train_demo_psic._retrain(argv) == [
        "--stage1-from", "a.pth.tar", "--threads", "2",
    ]  # fmt: skip


def _protection_report(path, psnr, recall):
    report = {
        "num_images": 200,
        "psnr": {"full": 29.5, "protected": psnr},
        "image_dependence": {"periodic_amplitude": {"8": 0.61, "16": 1.04}},
        "summary": {
            "vlps": [
                {"name": name, "role": role, "i2t": values}
                for name, role, values in recall
            ]
        },
    }
    path.write_text(json.dumps(report))
    return path


def test_sweep_points_keep_training_vlps_only(tmp_path):
    report = _protection_report(
        tmp_path / "p.json",
        27.351,
        [
            ("demo-vlp", "train", {"protected": 0.24, "worst_blind": 0.27}),
            ("eval-vlp-rn", "eval", {"protected": 0.6, "worst_blind": 0.7}),
        ],
    )
    (point,) = train_demo_psic.sweep_points([f"p5={report}"])
    assert point["label"] == "p5" and point["num_images"] == 200
    assert point["psnr"] == {"full": 29.5, "protected": 27.35}
    assert point["periodic_amplitude"] == {"8": 0.61, "16": 1.04}
    # The evaluation VLPs choose nothing: they never enter the sweep.
    assert point["vlps"] == {"demo-vlp": {"protected": 0.24, "worst_blind": 0.27}}
    text = train_demo_psic._sweep_text([point])
    assert "| p5 | 29.50 / 27.35 | 0.61 / 1.04 | 0.240 (0.270) |" in text


def test_sweep_from_pareto_takes_the_worst_plotted_attack(tmp_path):
    summary = {
        "points": [
            {
                "label": "a",
                "num_images": 200,
                "psnr_full": 29.6,
                "psnr": 24.87,
                "recall": {
                    "train:demo-vlp": {
                        "original": {"i2t": 0.97},
                        "protected": {"i2t": 0.095},
                        "protected_blur1": {"i2t": 0.2},
                        "protected_downup4": {"i2t": 0.29},
                    },
                    "eval:eval-vlp-vit": {"protected": {"i2t": 0.3}},
                },
            }
        ]
    }
    path = tmp_path / "pareto.json"
    path.write_text(json.dumps(summary))
    (point,) = train_demo_psic.sweep_from_pareto(path)
    assert point["vlps"] == {"demo-vlp": {"protected": 0.095, "worst_blind": 0.29}}
    assert point["psnr"] == {"full": 29.6, "protected": 24.87}
    assert "| a | 29.60 / 24.87 | – / – | 0.095 (0.290) |" in (
        train_demo_psic._sweep_text([point])
    )


def test_an_earlier_runs_stage_folders_are_kept_unless_asked(tmp_path, capsys):
    work = tmp_path / "work"
    base = ["--work-dir", str(work), "--zoo", str(tmp_path / "zoo")]
    args = train_demo_psic.parse_args(base)
    assert train_demo_psic.stage_dirs_to_train(args) == [
        work / "stage1",
        work / "stage2",
        work / "stage3",
    ]
    (work / "stage2").mkdir(parents=True)
    (work / "stage2" / "checkpoint.pth.tar").write_bytes(b"an earlier run")
    with pytest.raises(SystemExit):
        train_demo_psic.parse_args(base)
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.endswith(
        f"error: {work / 'stage2'} holds an earlier run; pass --force to replace "
        "it or choose another --work-dir"
    )
    assert train_demo_psic.parse_args([*base, "--force"]).force
    assert train_demo_psic.parse_args([*base, "--card-only"]).card_only
    # A stage given as a file is not trained: its folder is neither checked
    # nor removed, and a file this run reads is never in a folder it removes.
    given = work / "stage2" / "mine.pth.tar"
    given.write_bytes(b"a stage-2 result")
    args = train_demo_psic.parse_args([*base, "--stage2-from", str(given)])
    assert train_demo_psic.stage_dirs_to_train(args) == [
        work / "stage1",
        work / "stage3",
    ]
    (work / "stage3").mkdir()
    with pytest.raises(SystemExit):
        train_demo_psic.parse_args([*base, "--stage1-from", str(given), "--force"])
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(
            f"error: --stage1-from {given} lies in {work / 'stage2'}, which --force "
            "would remove"
        )
    )
    assert given.read_bytes() == b"a stage-2 result"
