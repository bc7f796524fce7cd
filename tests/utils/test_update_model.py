"""Tests of ``python -m compressai_psic.utils.update_model`` (and its wrapper
tools/update_model.py): file naming, plain state dicts, loading,
identical decoding and manifest updates (tiny random models)."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import torch
from compressai.zoo import bmshj2018_factorized as cai_factorized

from compressai_psic import load_checkpoint, zoo
from compressai_psic.io.files import file_sha256 as sha256_file
from tools import update_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A training checkpoint of a tiny model whose two paths differ, without
    CDF tables (as saved during training), plus the same model updated."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.bmshj2018_hyperprior(1, N=16, M=24)
        for param in model.trigger_proj.parameters():
            param.data.normal_(0.0, 0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    path = tmp_path_factory.mktemp("run") / "checkpoint_best_loss.pth.tar"
    torch.save(
        {
            "epoch": 7,
            "state_dict": model.state_dict(),
            "loss": 1.25,
            "optimizer": optimizer.state_dict(),
        },
        path,
    )
    reference = model.eval()
    reference.update(force=True)
    return path, reference


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(1)
    return torch.rand(1, 3, 64, 128)


def _decode_all(model, x):
    with torch.no_grad():
        out = model.compress(x)
        images = model.decompress_multi(
            out["strings"], out["shape"], conditions=("full", "protected")
        )["x_hat"]
    return out["strings"], images


def test_exported_name_hash_content_and_decoding(trained, image, tmp_path, capsys):
    path, reference = trained
    entry = update_model.main(
        [str(path), "-n", "psic-tiny", "-d", str(tmp_path), "-q", "1", "-m", "mse"]
    )
    files = list(tmp_path.iterdir())
    assert len(files) == 1  # no temporary file left behind
    exported = files[0]
    match = re.fullmatch(r"psic-tiny-([0-9a-f]{8})\.pth\.tar", exported.name)
    assert match is not None
    digest = sha256_file(exported)
    assert match.group(1) == digest[:8]
    assert entry == {
        "architecture": "bmshj2018-hyperprior",
        "name": "psic-tiny",
        "quality": 1,
        "metric": "mse",
        "file": exported.name,
        "sha256": digest,
        "includes_base": True,
    }
    assert json.loads(capsys.readouterr().out) == entry

    # Only the state dict is kept, with filled CDF tables.
    state = torch.load(exported, map_location="cpu", weights_only=True)
    assert not {"epoch", "state_dict", "loss", "optimizer"} & set(state)
    assert state["entropy_bottleneck._quantized_cdf"].numel() > 0
    assert state["gaussian_conditional._quantized_cdf"].numel() > 0

    loaded = load_checkpoint(exported)
    strings, images = _decode_all(loaded, image)
    ref_strings, ref_images = _decode_all(reference, image)
    assert strings == ref_strings
    for got, expected in zip(images, ref_images):
        assert torch.equal(got, expected)
    assert not torch.equal(images[0], images[1])  # full and protected differ


def test_default_name_and_no_update(trained, tmp_path):
    path, _ = trained
    update_model.main([str(path), "-d", str(tmp_path), "--no-update"])
    (exported,) = tmp_path.iterdir()
    assert re.fullmatch(r"checkpoint_best_loss-[0-9a-f]{8}\.pth\.tar", exported.name)
    state = torch.load(exported, map_location="cpu", weights_only=True)
    assert state["entropy_bottleneck._quantized_cdf"].numel() == 0


def test_plain_compressai_checkpoint_is_shielded(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        base = cai_factorized(1)
    path = tmp_path / "base.pth.tar"
    torch.save(base.state_dict(), path)
    out = tmp_path / "out"
    entry = update_model.main([str(path), "-d", str(out)])
    assert entry["architecture"] == "bmshj2018-factorized"  # guessed
    assert "name" not in entry and "quality" not in entry
    state = torch.load(out / entry["file"], map_location="cpu", weights_only=True)
    assert any(key.startswith("global_cond.") for key in state)


def test_manifest_keeps_other_entries(trained, image, tmp_path, monkeypatch):
    path, reference = trained
    manifest = tmp_path / "zoo" / "manifest.json"
    manifest.parent.mkdir()
    other = {
        "architecture": "mbt2018",
        "quality": 1,
        "metric": "mse",
        "file": "other.pth.tar",
        "sha256": "0" * 64,
        "includes_base": True,
    }
    named = {"name": "demo", "architecture": "mbt2018", "file": "d.pth.tar"}
    stale = dict(other, architecture="bmshj2018-hyperprior", sha256="1" * 64)
    manifest.write_text(
        json.dumps({"version": 1, "models": [other, stale, named]}), encoding="utf-8"
    )
    weights = tmp_path / "weights"
    entry = update_model.main(
        [str(path), "-d", str(weights), "-q", "1", "-m", "mse"]
        + ["--manifest", str(manifest)]
    )
    data = json.loads(manifest.read_text(encoding="utf-8"))
    assert data["version"] == 1
    # The stale entry of the same zoo point is replaced in place.
    assert data["models"] == [other, entry, named]
    assert entry["file"] == f"../weights/{next(weights.iterdir()).name}"

    # The zoo finds and verifies the new weights through the manifest.
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(manifest))
    model = zoo.bmshj2018_hyperprior(1, metric="mse", pretrained=True)
    model.update(force=True)
    _, images = _decode_all(model, image)
    _, ref_images = _decode_all(reference, image)
    assert all(torch.equal(a, b) for a, b in zip(images, ref_images))

    # A second export for another point is appended.
    again = update_model.main(
        [str(path), "-n", "q2", "-d", str(weights), "-q", "2", "-m", "mse"]
        + ["--manifest", str(manifest)]
    )
    data = json.loads(manifest.read_text(encoding="utf-8"))
    assert data["models"] == [other, entry, named, again]


def test_argument_errors(trained, tmp_path):
    path, _ = trained
    for argv in (
        [str(tmp_path / "missing.pth.tar")],
        [str(path), "-q", "1"],  # quality without metric
        [str(path), "-q", "9", "-m", "mse"],
        [str(path), "-a", "not-an-architecture"],
    ):
        with pytest.raises(SystemExit):
            update_model.main(argv + ["-d", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_exports_are_reproducible_and_respect_the_umask(trained, tmp_path, capsys):
    path, _ = trained
    old = os.umask(0o027)
    try:
        entries = [
            update_model.main([str(path), "-n", "r", "-d", str(tmp_path / str(i))])
            for i in range(3)
        ]
    finally:
        os.umask(old)
    # Issue 12: the temporary file name was stored in the archive.
    assert len({e["sha256"] for e in entries}) == 1
    files = [tmp_path / str(i) / entries[i]["file"] for i in range(3)]
    assert len({f.read_bytes() for f in files}) == 1
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files)
    manifest = tmp_path / "manifest.json"
    old = os.umask(0o022)
    try:
        update_model.main(
            [str(path), "-d", str(tmp_path / "m"), "--manifest", str(manifest)]
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o644


def test_malformed_manifest_is_a_one_line_error(trained, tmp_path, capsys):
    path, _ = trained
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        update_model.main(
            [str(path), "-d", str(tmp_path / "w"), "--manifest", str(manifest)]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("update_model: error:")
    assert "not a valid JSON manifest" in err[-1] and "Traceback" not in "".join(err)
