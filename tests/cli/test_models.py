"""Tests of compressai_psic.cli.models: choosing the model from the options
(architecture, quality, checkpoint, named codec, random init) or from a file's
header, and their one-line errors."""

from __future__ import annotations

import pytest

from compressai_psic.io.files import file_sha256

from .helpers import (
    RANDOM,
    assert_one_line_error,
    run,
    write_image,
)


def test_model_mismatch_names_both_models(tmp_path, capsys, checkpoints):
    write_image(tmp_path / "in.png", "RGB", 16, 16)
    psic = tmp_path / "x.psic"
    run("compress", tmp_path / "in.png", "-o", psic, "-c", checkpoints[0])
    sha = [file_sha256(p) for p in checkpoints]
    capsys.readouterr()

    assert run("decompress", psic, "-o", tmp_path / "o.png", "-c", checkpoints[1]) == 2
    assert_one_line_error(capsys, "model mismatch", sha[0][:12], sha[1][:12])

    assert run("decompress", psic, "-o", tmp_path / "o.png") == 2
    assert_one_line_error(capsys, "--checkpoint", sha[0][:12])

    zoo_file = tmp_path / "zoo.psic"
    run("compress", tmp_path / "in.png", "-o", zoo_file, *RANDOM)
    capsys.readouterr()
    assert (
        run("decompress", zoo_file, "-o", tmp_path / "o.png", "-c", checkpoints[0]) == 2
    )
    assert_one_line_error(capsys, "model mismatch", "random init, seed 0", sha[0][:12])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--arch", "nope", "--random-init"], "unknown architecture"),
        (["--quality", "9", "--random-init"], "quality"),
        (["--quality", "7", "--arch", "cheng2020-anchor", "--random-init"], "quality"),
        ([], "no PSIC weights are published"),  # none in the (empty) manifest
        (["--checkpoint", "missing.pth", "--quality", "2"], "--quality"),
        (["--checkpoint", "missing.pth"], "missing.pth"),
        (["--seed", "3"], "--random-init"),
        (["--random-init", "--seed", "-1"], "--seed"),
    ],
)
def test_model_selection_errors(tmp_path, capsys, argv, fragment):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *argv) == 2
    assert_one_line_error(capsys, fragment)
    assert not (tmp_path / "x.psic").exists()


def test_missing_weights_name_the_offline_options(tmp_path, capsys, packaged_manifest):
    write_image(tmp_path / "photo.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "photo.png", "-o", tmp_path / "p.psic") == 2
    assert_one_line_error(
        capsys, "no PSIC weights", "--model demo-psic", "--random-init"
    )
    assert run("compress", tmp_path / "photo.png", "--model", "nope") == 2
    assert_one_line_error(capsys, "unknown codec 'nope'", "demo-psic")
    argv = ("compress", tmp_path / "photo.png", "--model", "demo-psic", "-q", "2")
    assert run(*argv) == 2
    assert_one_line_error(capsys, "--model brings its own weights", "--quality")


def test_malformed_manifest_is_one_line(tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"models": [3]}', encoding="utf-8")
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(manifest))
    write_image(tmp_path / "photo.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "photo.png") == 2
    assert_one_line_error(capsys, "entry 0 is a int, not an object")


def test_no_note_before_an_error(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "in.png", "--random-init", "--quality", "9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("psic: error:"), err
