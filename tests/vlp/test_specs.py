"""Tests of VLP specs and ensembles (compressai_psic.vlp.specs)."""

import pytest
import torch

from compressai_psic.vlp import VLPEnsemble, build_vlp, split_spec, vlp_members


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
