"""Tests of the training ensemble, the evaluation-only VLP specs, and the
training CLI's transfer flags."""

import pytest
import torch

from compressai_psic.losses import PSICLoss
from compressai_psic.losses.transfer import has_resnet_tower
from compressai_psic.train.arguments import parse_args
from compressai_psic.train.criterion import build_criterion
from compressai_psic.vlp import VLPEnsemble, build_vlp, vlp_members
from compressai_psic.vlp.specs import evaluation_only_spec, split_spec
from compressai_psic.vlp.zoo_vlps import TRAIN_ENSEMBLE

BASE = ["--dataset-format", "scenes", "--no-cuda"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("eval-rn", True),
        ("eval_vit", True),
        ("eval-vit:/some/weights.pt", True),
        ("zoo:eval-vlp-rn", True),
        ("zoo:eval-vlp-vit", True),
        ("demo", False),
        ("train-ensemble", False),
        ("zoo:train-vlp-rn-wide", False),
        ("tiny", False),
        ("open_clip:ViT-B-32:openai", False),
    ],
)
def test_evaluation_only_spec(spec, expected):
    assert evaluation_only_spec(spec) is expected


def test_split_spec_new_backends():
    assert split_spec("train-ensemble") == ("train_ensemble", "", None)
    assert split_spec("zoo:train-vlp-rn-wide") == ("zoo", "train-vlp-rn-wide", None)
    with pytest.raises(ValueError):
        split_spec("nope:x")


def test_build_vlp_train_ensemble():
    ensemble = build_vlp("train-ensemble")
    assert isinstance(ensemble, VLPEnsemble)
    members = [member for member, _ in vlp_members(ensemble)]
    assert len(members) == 4 == len(TRAIN_ENSEMBLE)
    towers = [has_resnet_tower(member) for member in members]
    assert any(towers) and not all(towers)
    assert sum(weight for _, weight in vlp_members(ensemble)) == pytest.approx(1.0)
    with torch.no_grad():
        u = members[0].encode_image(torch.rand(1, 3, 32, 32))
    assert u.dim() == 2 and torch.isfinite(u).all()


def test_build_vlp_zoo_needs_name():
    with pytest.raises(ValueError, match="zoo"):
        build_vlp("zoo:")
    with pytest.raises(ValueError):
        build_vlp("zoo")


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


def test_transfer_flags_reach_criterion():
    args = parse_args(
        [
            *BASE,
            "--vlp",
            "tiny",
            "--lambda-vlp",
            "0.5",
            "--lambda-feature",
            "0.25",
            "--feature-stage",
            "layer2",
            "--lambda-masked",
            "0.125",
            "--ensemble",
            "balanced",
        ]
    )
    assert (args.lambda_feature, args.feature_stage) == (0.25, "layer2")
    assert (args.lambda_masked, args.ensemble) == (0.125, "balanced")
    criterion = build_criterion(args, torch.device("cpu"))
    assert isinstance(criterion, PSICLoss)
    assert criterion.lmbda_feature == 0.25
    assert criterion.feature_stage == "layer2"
    assert criterion.lmbda_masked == 0.125
    assert criterion.uaeo.ensemble == "balanced"


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
