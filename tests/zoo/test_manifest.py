"""Tests of the zoo manifest: clear errors for malformed files, sha256 compared
without regard to case, named codecs, and no torch import for look-ups."""

from __future__ import annotations

import json

import pytest

from compressai_psic import zoo
from compressai_psic.io.files import file_sha256

from ..helpers import modules_loaded_by


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(path))
    monkeypatch.setenv("COMPRESSAI_PSIC_CACHE", str(tmp_path / "cache"))
    return path


def write(path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data), "utf-8")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a valid JSON manifest"),
        ("[]", "expected {'models': [...]}"),
        ({"models": {}}, "expected {'models': [...]}"),
        ({"models": [3]}, "entry 0 is a int, not an object"),
        ({"models": [{"name": 3}]}, "'name' must be a string"),
        ({"models": [{"sha256": "xyz"}]}, "'sha256' must be 64 hex digits"),
        ({"models": [{"quality": "3"}]}, "'quality' must be an integer"),
    ],
)
def test_malformed_manifests_raise_value_errors_naming_the_file(
    manifest, content, message
):
    # Issue 12: these raised AttributeError or JSONDecodeError.
    write(manifest, content)
    with pytest.raises(ValueError, match="manifest.json") as exc:
        zoo.load_manifest()
    assert message in str(exc.value)


def test_sha256_is_compared_without_regard_to_case(manifest, tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    digest = file_sha256(weights)
    entry = {"name": "w", "architecture": "bmshj2018-hyperprior", "file": "w.bin"}
    write(manifest, {"models": [dict(entry, sha256=digest.upper())]})
    assert zoo.named_codec_file("w") == weights
    assert zoo.manifest_entry(sha256=digest)["name"] == "w"
    assert zoo.manifest_entry(sha256=digest.upper())["name"] == "w"
    write(manifest, {"models": [dict(entry, sha256="0" * 64)]})
    with pytest.raises(RuntimeError, match="does not match the manifest"):
        zoo.named_codec_file("w")


def test_named_codecs_and_the_offline_message(manifest):
    vlp = {"name": "vlp", "kind": "vlp", "sha256": "0" * 64}
    write(manifest, {"models": [vlp], "include_shipped": False})
    with pytest.raises(ValueError, match="unknown codec 'vlp'"):
        zoo.named_codec_file("vlp")  # not a codec
    message = zoo.published_weights_error("mbt2018", "mse", 3)
    assert "mbt2018 (quality 3, metric mse)" in message
    assert "--checkpoint PATH" in message and "--random-init" in message
    assert "--model" not in message


def test_packaged_manifest_lists_the_demo_codec():
    entries = zoo.load_manifest(zoo.zoo_dir() / "manifest.json")
    assert "demo-psic" in [e.get("name") for e in entries]


def test_manifest_look_ups_import_no_torch():
    code = (
        "from compressai_psic import zoo\n"
        "zoo.published_weights_error('bmshj2018-hyperprior', 'mse', 3)\n"
        "zoo.named_codec_file('demo-psic')"
    )
    assert modules_loaded_by(code, ("torch", "compressai")) == []


def test_add_manifest_entry_replaces_what_same_matches(tmp_path):
    path = tmp_path / "new" / "manifest.json"
    first = {"name": "a", "file": "a1"}
    assert zoo.add_manifest_entry(path, first) is None  # folder and file created
    data = {"version": 2, "models": [first, {"name": "b", "file": "b1"}]}
    write(path, data)
    assert zoo.add_manifest_entry(path, {"name": "a", "file": "a2"}) == first
    replaced = zoo.add_manifest_entry(
        path, {"name": "c", "file": "b2"}, same=lambda old, new: old["name"] == "b"
    )
    assert replaced == {"name": "b", "file": "b1"}
    saved = json.loads(path.read_text("utf-8"))
    assert saved["version"] == 2  # other top-level keys are kept
    assert [e["file"] for e in saved["models"]] == ["a2", "b2"]


def test_your_manifest_adds_to_the_shipped_one(tmp_path, monkeypatch):
    mine = tmp_path / "mine.json"
    entry = {"name": "my-codec", "kind": "codec", "architecture": "mbt2018"}
    write(mine, {"models": [dict(entry, file="my.pth.tar", sha256="a" * 64)]})
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(mine))
    assert zoo.manifest_paths() == [mine, zoo.zoo_dir() / "manifest.json"]
    names = zoo.codec_names()
    assert names[0] == "my-codec" and "demo-psic" in names
    # VLP entries are never offered as codecs, even those with an architecture.
    shipped_vlps = [e["name"] for e in zoo.load_manifest() if e.get("kind") == "vlp"]
    assert "eval-vlp-rn" in shipped_vlps
    assert not set(shipped_vlps) & set(names)
    with pytest.raises(ValueError) as info:
        zoo.named_codec_file("eval-vlp-rn")
    assert "eval-vlp" not in str(info.value).split("has")[-1]
    # Opting out of the shipped entries.
    write(mine, {"models": [], "include_shipped": False})
    assert zoo.manifest_paths() == [mine] and zoo.codec_names() == []
