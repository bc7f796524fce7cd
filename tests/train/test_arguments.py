"""Tests of compressai_psic.train.arguments: the stage defaults, the options and
their one-line refusals (dataset layout, save folder, evaluation VLPs, transfer
flags), the help text."""

from __future__ import annotations

import os
from typing import List

import pytest
from PIL import Image

from compressai_psic.train import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    STAGE_DEFAULTS,
    build_parser,
    parse_args,
)
from compressai_psic.train.arguments import save_dir_problem

BASE = ["--dataset-format", "scenes", "--no-cuda"]


def test_stage_defaults_follow_the_paper():
    one = parse_args(["--dataset-format", "scenes", "--no-cuda"])
    two = parse_args(["--dataset-format", "scenes", "--stage", "2", "--no-cuda"])
    for args, stage in ((one, 1), (two, 2)):
        for key, value in STAGE_DEFAULTS[stage].items():
            assert getattr(args, key) == value
    assert (one.learning_rate, one.lambda_vlp) == (1e-4, 9e-4)
    assert one.milestones == [80, 100]
    assert (two.learning_rate, two.lambda_vlp, two.batch_size) == (1e-5, 0.07, 64)
    assert one.lambda_full == one.lambda_prot == 0.0011
    assert one.vlp == ["open_clip:ViT-B-32:openai"]
    assert one.val_split == "val" and one.paths == "sample"


def test_lambda_flags_and_validation():
    args = parse_args(
        ["--dataset-format", "scenes", "--lambda", "0.01", "--lambda-prot", "0.02"]
        + ["--no-cuda", "--vlp", "tiny", "--vlp", "tiny:1"]
    )
    assert (args.lambda_full, args.lambda_prot) == (0.01, 0.02)
    assert args.vlp == ["tiny", "tiny:1"]
    with pytest.raises(SystemExit):  # no captions: UAEO impossible
        parse_args(["-d", "x", "--dataset-format", "imagefolder", "--no-cuda"])
    with pytest.raises(SystemExit):
        parse_args(["--dataset-format", "flickr8k", "--no-cuda"])  # no -d
    with pytest.raises(SystemExit):
        parse_args(["--dataset-format", "scenes", "--init", "a", "--checkpoint", "b"])
    rd = parse_args(["-d", "x", "--dataset-format", "imagefolder", "--lambda-vlp", "0"])
    assert rd.vlp == [] and rd.val_split == "test"


def _scenes(*extra: str) -> List[str]:
    return ["--dataset-format", "scenes", "--no-cuda", *extra]


@pytest.mark.parametrize("name", [CHECKPOINT_NAME, BEST_CHECKPOINT_NAME])
def test_an_earlier_runs_checkpoints_are_kept_unless_asked(tmp_path, capsys, name):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("a log is appended to, never replaced")
    assert parse_args(_scenes("--save-dir", str(run_dir))).save_dir == str(run_dir)
    (run_dir / name).write_bytes(b"an earlier run")
    with pytest.raises(SystemExit) as refused:
        parse_args(_scenes("--save-dir", str(run_dir)))
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        f"error: --save-dir {run_dir} holds an earlier run's {name}: resume it "
        f"with --checkpoint {run_dir / CHECKPOINT_NAME}, replace it with "
        "-f/--force, or choose another --save-dir"
    ) in line
    # Asked to: replacing, resuming that run, or not saving at all.
    assert parse_args(_scenes("--save-dir", str(run_dir), "-f")).force
    resume = str(run_dir / CHECKPOINT_NAME)
    assert parse_args(_scenes("--save-dir", str(run_dir), "--checkpoint", resume))
    assert not parse_args(_scenes("--save-dir", str(run_dir), "--no-save")).save
    assert (run_dir / name).read_bytes() == b"an earlier run"


def test_save_dir_problem(tmp_path):
    elsewhere = tmp_path / "other" / CHECKPOINT_NAME
    assert save_dir_problem(str(tmp_path / "new"), None, False) is None
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"")
    assert "holds an earlier run's" in save_dir_problem(str(tmp_path), None, False)
    # Resuming another run into this folder would still replace its files.
    assert "holds" in save_dir_problem(str(tmp_path), str(elsewhere), False)
    same = str(tmp_path / "." / CHECKPOINT_NAME)
    assert save_dir_problem(str(tmp_path), same, False) is None
    assert save_dir_problem(str(tmp_path), None, True) is None
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    for force in (False, True):
        assert save_dir_problem(str(a_file), None, force) == (
            f"--save-dir {a_file}: exists and is not a folder"
        )


def test_flat_folder_names_dataset_format_before_any_model(tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "0.png")
    with pytest.raises(SystemExit) as refused:
        parse_args(["-d", str(tmp_path), "--no-cuda"])
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "has no captions.txt" in line
    assert "--dataset-format imagefolder --lambda-vlp 0" in line
    assert "--dataset-format list" in line


def test_refusals_are_one_line_without_the_usage_text(tmp_path, capsys):
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"an earlier run")
    argvs = [
        ["--dataset-format", "scenes", "--save-dir", str(tmp_path)],
        ["--dataset-format", "scenes", "--epochs", "0"],
        ["--no-such-flag"],
    ]
    for argv in argvs:
        with pytest.raises(SystemExit) as refused:
            parse_args(argv + ["--no-cuda"])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "usage:" not in err and err.endswith("(see --help)\n")


def test_defaults_fit_the_machine_and_help_lists_shipped_vlps():
    args = parse_args(["--dataset-format", "scenes", "--lambda-vlp", "0"])
    assert args.num_workers == min(4, os.cpu_count() or 1)
    text = " ".join(build_parser().format_help().split())
    assert "'demo' or 'train-ensemble'" in text
    assert "eval-rn/eval-vit are refused" in text


def test_shared_option_values_have_one_home():
    from compressai_psic import datasets, losses, options

    assert datasets.CROP_MODES is options.CROP_MODES
    assert datasets.ON_ERROR is options.ON_ERROR
    assert losses.DEFAULT_TAU is options.DEFAULT_TAU
    assert losses.ENSEMBLE_MODES is options.ENSEMBLE_MODES
    assert losses.FEATURE_STAGES is options.FEATURE_STAGES
    parser = build_parser()
    choices = {a.dest: a.choices for a in parser._actions if a.choices}
    assert choices["ensemble"] == options.ENSEMBLE_MODES
    assert choices["feature_stage"] == options.FEATURE_STAGES


@pytest.mark.parametrize("spec", ["eval-rn", "eval-vit", "zoo:eval-vlp-rn"])
def test_training_refuses_evaluation_vlps(spec, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args([*BASE, "--vlp", "tiny", "--vlp", spec])
    assert info.value.code != 0
    assert "evaluation VLPs" in capsys.readouterr().err


def test_transfer_flags_defaults():
    args = parse_args([*BASE, "--vlp", "tiny"])
    assert args.lambda_feature == 0.0 and args.lambda_masked == 0.0
    assert args.feature_stage == "layer3" and args.ensemble == "mean"


@pytest.mark.parametrize(
    "extra",
    [
        ["--feature-stage", "layer7"],
        ["--ensemble", "median"],
        ["--lambda-feature", "-1"],
        ["--lambda-masked", "-0.5"],
    ],
)
def test_invalid_transfer_flags(extra):
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--vlp", "tiny", *extra])
