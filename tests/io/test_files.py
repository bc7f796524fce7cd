"""Tests of the file helpers: atomic writes with the umask's permissions, sha256,
the one writer of published weights."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from compressai_psic.io.files import file_sha256, save_state_dict, write_bytes

from ..helpers import ROOT


def test_file_sha256(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc" * 1000)
    assert file_sha256(path, chunk_size=7) == (
        hashlib.sha256(b"abc" * 1000).hexdigest()
    )


@pytest.mark.parametrize(
    "umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]
)
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    # Issue 12: outputs were 0600 whatever the umask (mkstemp's mode).
    old = os.umask(umask)
    try:
        write_bytes(tmp_path / "x.psic", b"PSIC")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.psic").stat().st_mode) == mode


def test_unwritable_target_is_named_not_the_temporary_file(tmp_path):
    target = tmp_path / "missing-folder" / "x.psic"
    with pytest.raises(OSError) as exc:
        write_bytes(target, b"PSIC")
    assert exc.value.filename == str(target)
    assert ".x.psic." not in str(exc.value)


def test_saved_weights_are_named_by_their_hash_and_reproducible(tmp_path):
    import torch

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}
    first = save_state_dict(state, tmp_path / "a", "tiny")
    again = save_state_dict(dict(state), tmp_path / "b", "tiny")
    assert first["path"].name == again["path"].name
    assert first["path"].name == f"tiny-{first['sha256'][:8]}.pth.tar"
    data = first["path"].read_bytes()
    assert data == again["path"].read_bytes()
    assert hashlib.sha256(data).hexdigest() == first["sha256"]
    loaded = torch.load(first["path"], weights_only=True)
    assert torch.equal(loaded["w"], state["w"])
    with pytest.raises(ValueError, match="a plain file name"):
        save_state_dict(state, tmp_path, "sub/name")


def test_a_failed_save_leaves_no_file(tmp_path, monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_state_dict({"w": torch.zeros(1)}, tmp_path, "tiny")
    assert list(tmp_path.iterdir()) == []


def test_every_exporter_writes_weights_with_the_one_writer():
    exporters = [
        "compressai_psic/utils/update_model.py",
        "tools/train_demo_psic.py",
        "tools/train_demo_vlp.py",
    ]
    for path in exporters:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert "save_state_dict(" in source, path
        assert "mkstemp" not in source and "torch.save(" not in source, path


def test_float16_weights_round_parameters_and_keep_buffers_exact():
    import torch

    from compressai_psic.io.files import float16_state_dict

    from ..models.helpers import tiny_zoo_model

    model = tiny_zoo_model("bmshj2018-hyperprior")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parameters = {name for name, _ in model.named_parameters()}
    state = float16_state_dict(model)
    for name, value in state.items():
        if name in parameters:
            assert value.dtype == torch.float16, name
            assert torch.equal(value.float(), model.state_dict()[name]), name
        elif name.endswith("_cdf"):
            # Tables recomputed from the rounded weights: what a user loads.
            assert torch.equal(value, model.state_dict()[name]), name
        elif not name.endswith(("_cdf_length", "_offset", "_quantized_cdf")):
            assert value.dtype == before[name].dtype, name
    pedestals = [n for n in state if n.endswith("beta_reparam.pedestal")]
    assert pedestals and all(torch.equal(state[n], before[n]) for n in pedestals)
