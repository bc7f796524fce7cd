"""Tests of compressai_psic.vlp.open_clip, offline: weights from a checkpoint
file or folder, random weights on request, missing weights named, an open_clip
tag that fails at once and in one line without a network, downloads without
retry noise."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from compressai_psic.vlp import (
    OpenCLIPAdapter,
    build_vlp,
    load_clip_state_dict,
)


def test_offline_vlp_tag_fails_at_once_in_one_line(monkeypatch, tmp_path, capsys):
    import socket

    import open_clip

    from compressai_psic.vlp import open_clip as adapter

    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was tried without a network")

    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(open_clip, "create_model", no_download)
    with pytest.raises(FileNotFoundError) as info:
        adapter._create_open_clip_model(
            open_clip, "ViT-B-32", "openai", str(tmp_path), "fp32"
        )
    message = str(info.value)
    assert "huggingface.co cannot be reached: Name or service not known" in message
    assert "\n" not in message
    assert capsys.readouterr().err == ""


def test_downloads_print_no_retry_noise(capsys):
    import logging

    from compressai_psic.vlp.open_clip import _quiet_downloads

    root = logging.getLogger()
    handlers = list(root.handlers)
    with _quiet_downloads():
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s")
        logging.error("Failed to download weights")  # open_clip's own report
    assert root.handlers == handlers
    captured = capsys.readouterr()
    assert captured.err == captured.out == ""


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
