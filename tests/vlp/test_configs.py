"""``compressai_psic.vlp.configs``: the shipped VLPs' architectures are JSON
files read by one loader, and every shipped weights file loads with its file
exactly as with the architecture its manifest entry records."""

from __future__ import annotations

import json

import pytest
import torch

from compressai_psic.vlp import EVAL_VLPS, TRAIN_VLPS, VLP_ARCHITECTURES
from compressai_psic.vlp.configs import (
    CONFIG_DIR,
    list_vlp_architectures,
    load_vlp_configs,
    vlp_config,
)
from compressai_psic.vlp.zoo_vlps import DEMO_VLP_NAME, load_zoo_vlp
from compressai_psic.zoo import manifest_entry, zoo_dir

#: Every shipped VLP: manifest name → architecture file.
SHIPPED = {
    DEMO_VLP_NAME: "vit",
    **{name: arch for name, arch in EVAL_VLPS.values()},
    **TRAIN_VLPS,
}


def test_the_architectures_are_the_json_files():
    assert list_vlp_architectures() == sorted(VLP_ARCHITECTURES)
    assert load_vlp_configs() == VLP_ARCHITECTURES
    for name in list_vlp_architectures():
        text = (CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert json.loads(text) == VLP_ARCHITECTURES[name]
    fresh = vlp_config("vit")
    fresh["embed_dim"] = 1
    assert vlp_config("vit")["embed_dim"] == VLP_ARCHITECTURES["vit"]["embed_dim"]
    with pytest.raises(ValueError, match="Unknown VLP architecture 'vit-xl'"):
        vlp_config("vit-xl")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_load_identically_with_their_json_file(name):
    entry = manifest_entry(name=name)
    assert entry["config"] == vlp_config(SHIPPED[name])
    path = zoo_dir() / entry["file"]
    from_manifest = load_zoo_vlp(name, path, config=entry["config"], autocast=False)
    from_file = load_zoo_vlp(name, path, default_config=vlp_config(SHIPPED[name]))
    ours, theirs = from_file.model.state_dict(), from_manifest.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(
            from_file.encode_image(images), from_manifest.encode_image(images)
        )
        caption = ["a large red circle at the top left on a plain grey background"]
        assert torch.equal(
            from_file.encode_text(caption), from_manifest.encode_text(caption)
        )
