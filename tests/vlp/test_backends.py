"""Tests of the open_clip and OpenAI backends and of CLIP weight files
(compressai_psic.vlp.open_clip, .openai, .files), offline."""

import json
import sys
import types

import open_clip
import pytest
import torch

from compressai_psic.vlp import (
    OpenAIClipAdapter,
    OpenCLIPAdapter,
    build_vlp,
    load_clip_state_dict,
    save_torchscript_state_dict,
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


@pytest.fixture()
def tiny_config(tmp_path):
    config = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "width": 64, "heads": 1, "layers": 1},
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "PSIC-Test-Tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "cfg")
    return "PSIC-Test-Tiny"


def test_open_clip_checkpoint_file_and_random_weights(tmp_path, tiny_config, vlp):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({"state_dict": vlp.model.state_dict()}, path)
    loaded = OpenCLIPAdapter(tiny_config, pretrained=str(path))
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.encode_image(x), vlp.encode_image(x))
    from_dir = OpenCLIPAdapter(tiny_config, pretrained=str(tmp_path))
    torch.testing.assert_close(from_dir.encode_image(x), vlp.encode_image(x))

    with pytest.warns(UserWarning, match="random weights"):
        OpenCLIPAdapter(tiny_config)
    explicit = build_vlp(f"open_clip:{tiny_config}:random")
    assert explicit.embed_dim == 32


def test_missing_weights_name_the_expected_file(tmp_path, tiny_config, monkeypatch):
    missing = tmp_path / "nowhere" / "ViT-B-32.pt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        OpenCLIPAdapter("ViT-B-32", pretrained=str(missing))
    with pytest.raises(FileNotFoundError, match="open_clip_pytorch_model.bin"):
        OpenCLIPAdapter(tiny_config, pretrained=str(tmp_path))  # empty directory
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):
        OpenCLIPAdapter("ViT-B-32", pretrained="no-such-tag")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_clip_state_dict(missing)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(FileNotFoundError) as info:
        OpenCLIPAdapter("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "openai" in message and str(tmp_path) in message
    assert "ViT-B-32.pt" in message and "vit_base_patch32_clip_224.openai" in message


def _fake_clip_module(state_dict_builder):
    """Stands in for OpenAI's ``clip`` package (not installable offline)."""
    clip = types.ModuleType("clip")
    clip.clip = types.SimpleNamespace(
        _MODELS={"Tiny/8": "https://example.invalid/0123/Tiny-8.pt"},
        _download=lambda url, root: (_ for _ in ()).throw(OSError("offline")),
    )
    clip.model = types.SimpleNamespace(build_model=state_dict_builder)
    clip.tokenize = lambda texts, truncate=False: open_clip.SimpleTokenizer(
        context_length=16
    )(texts)
    return clip


def test_openai_clip_adapter(tmp_path, monkeypatch, vlp):
    monkeypatch.setitem(sys.modules, "clip", None)  # makes `import clip` fail
    with pytest.raises(ImportError, match="open_clip"):
        OpenAIClipAdapter("ViT-B/32")
    with pytest.raises(ImportError, match="clip"):
        build_vlp("clip:ViT-B/32")

    from open_clip.model import build_model_from_openai_state_dict

    def build_model(state_dict):
        model = build_model_from_openai_state_dict(state_dict, cast_dtype=None)
        model.visual.input_resolution = model.visual.image_size[0]
        return model

    monkeypatch.setitem(sys.modules, "clip", _fake_clip_module(build_model))
    path = save_torchscript_state_dict(vlp.model.state_dict(), tmp_path / "Tiny-8.pt")
    adapter = OpenAIClipAdapter(str(path))
    x = torch.rand(1, 3, 40, 32)
    torch.testing.assert_close(
        adapter.encode_image(x), vlp.encode_image(x), atol=5e-3, rtol=0
    )
    assert adapter.encode_text(["a very long caption " * 20]).shape == (1, 32)

    by_name = OpenAIClipAdapter("Tiny/8", download_root=str(tmp_path))
    torch.testing.assert_close(by_name.encode_image(x), adapter.encode_image(x))
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match="Tiny-8.pt"):
        OpenAIClipAdapter("Tiny/8", download_root=str(empty))
    with pytest.raises(ValueError, match="Tiny/8"):
        OpenAIClipAdapter("ViT-H/99")
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        OpenAIClipAdapter(str(tmp_path / "gone.pt"))
