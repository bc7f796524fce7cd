"""Tests of compressai_psic.vlp.files: CLIP weight files (OpenAI's TorchScript
archives, open_clip checkpoints) read without unpickling, and found in a folder."""

from __future__ import annotations

import pytest
import torch

from compressai_psic.vlp import (
    OpenCLIPAdapter,
    load_clip_state_dict,
    save_torchscript_state_dict,
)
from compressai_psic.vlp.files import (
    find_checkpoint_in_dir,
    is_torchscript_archive,
    looks_like_path,
)


def test_openai_torchscript_file_loads(tmp_path, vlp):
    path = save_torchscript_state_dict(vlp.model.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(RuntimeError), pytest.warns(UserWarning):
        torch.load(path, weights_only=True)  # why such files need special handling
    state_dict = load_clip_state_dict(path)
    assert "input_resolution" not in state_dict
    assert set(state_dict) == set(vlp.model.state_dict())

    loaded = OpenCLIPAdapter("ViT-B-32", pretrained=str(path))
    assert loaded.embed_dim == 32 and loaded.image_size == (32, 32)
    x = torch.rand(2, 3, 32, 32)
    # OpenAI files hold float16 weights, hence the tolerance.
    torch.testing.assert_close(
        loaded.encode_image(x), vlp.encode_image(x), atol=5e-3, rtol=0
    )
    torch.testing.assert_close(
        loaded.encode_text(["a cat"]), vlp.encode_text(["a cat"]), atol=5e-3, rtol=0
    )
    assert all(not p.requires_grad for p in loaded.parameters())

    # A directory holding the file, named as OpenAI's downloader names it.
    (tmp_path / "weights").mkdir()
    (tmp_path / "tiny.pt").rename(tmp_path / "weights" / "ViT-B-32.pt")
    from_dir = OpenCLIPAdapter("ViT-B-32", pretrained=str(tmp_path / "weights"))
    torch.testing.assert_close(from_dir.encode_image(x), loaded.encode_image(x))


def test_a_state_dict_file_is_unwrapped(tmp_path):
    weights = {"visual.proj": torch.ones(2, 2), "logit_scale": torch.tensor(1.0)}
    wrapped = {f"module.{k}": v for k, v in weights.items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "w.pth")
    loaded = load_clip_state_dict(tmp_path / "w.pth")
    assert loaded.keys() == weights.keys()
    assert torch.equal(loaded["visual.proj"], weights["visual.proj"])
    assert not is_torchscript_archive(str(tmp_path / "w.pth"))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_clip_state_dict(tmp_path / "list.pt")


def test_weights_in_a_folder_are_found_by_name_or_alone(tmp_path):
    with pytest.raises(FileNotFoundError, match="No weights for VLP 'RN50'"):
        find_checkpoint_in_dir(str(tmp_path), "RN50")
    (tmp_path / "a.bin").write_bytes(b"")
    assert find_checkpoint_in_dir(str(tmp_path), "RN50") == str(tmp_path / "a.bin")
    (tmp_path / "b.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="found several"):
        find_checkpoint_in_dir(str(tmp_path), "RN50")
    (tmp_path / "ViT-B-32.pt").write_bytes(b"")  # OpenAI's downloader's name
    found = find_checkpoint_in_dir(str(tmp_path), "ViT-B/32")
    assert found == str(tmp_path / "ViT-B-32.pt")


@pytest.mark.parametrize(
    "value, is_path",
    [
        ("openai", False),
        ("laion2b_s34b_b79k", False),
        ("weights/clip", True),
        ("clip.safetensors", True),
        ("ViT-B-32.pt", True),
    ],
)
def test_a_pretrained_value_is_a_path_or_a_tag(value, is_path):
    assert looks_like_path(value) is is_path
