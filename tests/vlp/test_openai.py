"""Tests of compressai_psic.vlp.openai, offline: OpenAI's ``clip`` package is
replaced by a stand-in that builds a tiny CLIP; without it the adapter names
what to install."""

from __future__ import annotations

import sys
import types

import open_clip
import pytest
import torch

from compressai_psic.vlp import (
    OpenAIClipAdapter,
    build_vlp,
    save_torchscript_state_dict,
)


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
