"""Tests of compressai_psic.train.criterion: the transfer flags reach the loss,
a VLP that cannot load is one line that names the shipped ones, the --eot
transforms."""

from __future__ import annotations

import argparse

import pytest
import torch

from compressai_psic.losses import PSICLoss
from compressai_psic.train.arguments import parse_args
from compressai_psic.train.criterion import build_criterion

BASE = ["--dataset-format", "scenes", "--no-cuda"]


def _vlp_error(monkeypatch, error: Exception) -> str:
    """The message of the training tool's criterion when ``build_vlp`` fails."""
    import compressai_psic.vlp as vlp

    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(vlp, "build_vlp", offline)
    args = argparse.Namespace(
        lambda_vlp=0.0009,
        vlp=["open_clip:ViT-B-32:openai"],
        vlp_cache_dir=None,
        vlp_precision="fp32",
    )
    with pytest.raises(ValueError) as info:
        build_criterion(args, torch.device("cpu"))
    return str(info.value)


def test_vlp_that_cannot_load_names_the_shipped_ones(monkeypatch):
    message = _vlp_error(
        monkeypatch,
        RuntimeError("Failed to download file (open_clip_pytorch_model.bin)"),
    )
    assert "cannot load --vlp open_clip:ViT-B-32:openai" in message
    assert "--vlp demo or train-ensemble" in message
    assert "eval-rn" not in message  # evaluation VLPs are never trained against
    assert "--lambda-vlp 0" in message and "\n" not in message


def test_long_vlp_errors_are_not_cut(monkeypatch):
    reason = "x" * 400 + " the end of the reason"
    assert f"({reason})" in _vlp_error(monkeypatch, OSError(reason))


def test_eot_names_build_one_random_transform_or_none():
    from compressai_psic.train.criterion import build_eot
    from compressai_psic.transforms import RandomScraperTransform

    assert build_eot("none") is None and build_eot("") is None
    transform = build_eot("jpeg, blur", seed=0)
    assert isinstance(transform, RandomScraperTransform)
    for spec in ("jpeg,sharpen", ","):
        with pytest.raises(ValueError, match="Invalid --eot"):
            build_eot(spec)


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
