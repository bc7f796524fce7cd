"""Tests of VLP specs (compressai_psic.vlp.specs): parsing them, building
VLPs and ensembles (the training ensemble among them), and which specs are
evaluation-only."""

import pytest
import torch

from compressai_psic.losses.transfer import has_resnet_tower
from compressai_psic.vlp import VLPEnsemble, build_vlp, split_spec, vlp_members
from compressai_psic.vlp.specs import evaluation_only_spec
from compressai_psic.vlp.zoo_vlps import TRAIN_ENSEMBLE


def test_build_vlp_specs_and_ensembles(tmp_path):
    assert split_spec("open_clip:ViT-B-32:/w/ViT-B-32.pt") == (
        "open_clip",
        "ViT-B-32",
        "/w/ViT-B-32.pt",
    )
    assert split_spec("open_clip:ViT-B-32:C:\\w\\b.pt")[2] == "C:\\w\\b.pt"
    assert split_spec("open_clip:hf-hub:org/repo") == (
        "open_clip",
        "hf-hub:org/repo",
        None,
    )
    assert split_spec("clip:ViT-B/32") == ("clip", "ViT-B/32", None)
    with pytest.raises(ValueError, match="'eval_vit', 'train_ensemble', 'zoo', 'tiny'"):
        build_vlp("blip:base")
    with pytest.raises(ValueError, match="model name"):
        build_vlp("open_clip:")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_vlp(f"open_clip:ViT-B-32:{tmp_path / 'missing.pt'}")

    single = build_vlp("tiny")
    assert build_vlp(single) is single and build_vlp(["tiny"]).name == "tiny:0"
    ensemble = build_vlp(["tiny:0", "tiny:1"])
    assert isinstance(ensemble, VLPEnsemble) and len(ensemble) == 2
    x = torch.rand(2, 3, 32, 32)
    first, second = ensemble.encode_image(x)
    assert not torch.allclose(first, second)  # different seeds, different models
    assert [w for _, w in vlp_members(ensemble)] == [0.5, 0.5]
    ensemble.train()
    assert not any(m.training for m in ensemble.modules())
    with pytest.raises(ValueError, match="positive sum"):
        VLPEnsemble([single], weights=[0.0])
    with pytest.raises(ValueError, match="VLPAdapter"):
        VLPEnsemble([torch.nn.Linear(2, 2)])


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
