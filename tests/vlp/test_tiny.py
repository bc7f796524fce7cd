"""Tests of compressai_psic.vlp.tiny: the tiny CLIP of the offline tests and
demos is reproducible from its seed, frozen, and checks its sizes."""

from __future__ import annotations

import pytest
import torch

from compressai_psic.vlp import build_vlp
from compressai_psic.vlp.tiny import tiny_clip, tiny_vlp


def test_the_seed_fixes_the_weights_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    one, again, other = tiny_clip(seed=1), tiny_clip(seed=1), tiny_clip(seed=2)
    assert torch.rand(1) == expected
    state, same, different = (m.state_dict() for m in (one, again, other))
    assert all(torch.equal(state[k], same[k]) for k in state)
    assert any(not torch.equal(state[k], different[k]) for k in state)
    assert not one.training


def test_tiny_vlp_is_named_after_its_spec_and_embeds_both_modalities():
    vlp = tiny_vlp(seed=3)
    assert vlp.name == "tiny:3"
    assert vlp.embed_dim == 32 and vlp.image_size == (32, 32)
    assert all(not p.requires_grad for p in vlp.parameters())
    images = vlp.encode_image(torch.rand(2, 3, 32, 32))
    texts = vlp.encode_text(["a red circle", "two blue stars"])
    assert images.shape == texts.shape == (2, 32)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(build_vlp("tiny:3").encode_image(x), vlp.encode_image(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"width": 96}, "multiple of 64"), ({"patch_size": 5}, "must divide")],
)
def test_sizes_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_clip(**kwargs)
