"""Tests of compressai_psic.vlp.open_clip, offline: an open_clip tag fails at
once and in one line without a network, downloads print no retry noise."""

from __future__ import annotations

import pytest


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
