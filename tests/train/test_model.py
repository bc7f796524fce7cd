"""Tests of compressai_psic.train.model: the start point of a run (CompressAI's
zoo, a checkpoint) and its errors."""

from __future__ import annotations

import urllib.error

import pytest
from compressai.models import ScaleHyperprior

from compressai_psic.train import (
    CHECKPOINT_NAME,
    build_model,
    main,
    parse_args,
)
from compressai_psic.train.model import _zoo_init

from .helpers import TINY, changed, params


def test_start_point_errors(stage1, tmp_path):
    scenes = ["--dataset-format", "scenes", "--no-cuda", "--save-dir", str(tmp_path)]
    with pytest.raises(ValueError, match="zoo:NAME:QUALITY"):
        main([*scenes, "--init", "zoo:bmshj2018-hyperprior"])
    with pytest.raises(ValueError, match="bmshj2018-factorized"):
        main([*scenes, "--init", "zoo:nope:3"])
    with pytest.raises(ValueError, match="multiples of 64"):
        main([*scenes, "--patch-size", "32", "32", *TINY[:4]])
    checkpoint = str(stage1[0] / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="does not match"):
        main([*scenes, "--init", checkpoint, "-m", "mbt2018"])
    with pytest.raises(ValueError, match="--init"):  # resuming across stages
        main([*scenes, "--checkpoint", checkpoint, "--stage", "2"])


def test_init_from_compressai_zoo(monkeypatch):
    import compressai.zoo

    calls = []
    base = ScaleHyperprior(N=16, M=24)

    def fake_entry(quality, metric="mse", pretrained=False, progress=True):
        calls.append((quality, metric, pretrained))
        return base

    monkeypatch.setitem(compressai.zoo.image_models, "bmshj2018-hyperprior", fake_entry)
    args = parse_args(
        ["--dataset-format", "scenes", "--no-cuda", "--metric", "ms-ssim"]
        + ["--init", "zoo:bmshj2018-hyperprior:5"]
    )
    net = build_model(args)
    assert calls == [(5, "ms-ssim", True)]  # CompressAI's pretrained weights
    assert net.architecture == "bmshj2018-hyperprior"
    assert not changed(params(base), params(net))
    assert "global_cond.beta_mlp.fc1.weight" in net.state_dict()


def test_offline_zoo_init_names_the_way_out(monkeypatch):
    import compressai.zoo.image as cai_image

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cai_image, "load_state_dict_from_url", offline)
    with pytest.raises(ValueError) as info:
        _zoo_init("zoo:bmshj2018-hyperprior:1", "mse")
    message = str(info.value)
    assert "cannot download CompressAI's bmshj2018-hyperprior weights" in message
    assert "name resolution" in message and "--init /path/to/" in message
