"""Tests of compressai_psic.cli.jobs: pairing inputs with outputs (files,
folders, name collisions), the checks that come before any model loads (missing
inputs, existing outputs, output folders), progress and one bad file among good
ones."""

from __future__ import annotations

import pytest

from compressai_psic.cli import models as cli_models

from .helpers import (
    RANDOM,
    assert_one_line_error,
    decoded,
    error_lines,
    run,
    write_image,
)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Any model load fails the test: the errors must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(cli_models.ModelCache, "get", refuse)


def test_bad_inputs_and_outputs_fail_before_model_loading(
    tmp_path, capsys, no_model_loading
):
    image = write_image(tmp_path / "a.png", "RGB", 16, 16)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [
        (["compress", tmp_path / "missing.png"], "missing.png: no such file"),
        (["compress", text], "notes.png: not an image file"),
        (["compress", image, "-o", image / "a.psic"], f"{image} is not a folder"),
        (["decompress", tmp_path / "missing.psic"], "missing.psic: no such file"),
        (["decompress", image, "-o", tmp_path / "x.png"], "a.png: not a PSIC file"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert run(*argv, *RANDOM[:1] if argv[0] == "compress" else []) == 2
        assert_one_line_error(capsys, message)


def _folder_of_outputs(tmp_path, existing):
    images = tmp_path / "images"
    images.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for name in "abc":
        write_image(images / f"{name}.png", "RGB", 8, 8)
        (out / f"{name}.psic").write_bytes(b"psic")
    for name in existing:
        (out / f"{name}.png").write_bytes(b"precious")
    return images, out


def test_folder_refusals_are_one_line_before_model_loading(
    tmp_path, capsys, no_model_loading
):
    images, out = _folder_of_outputs(tmp_path, "ab")
    capsys.readouterr()
    assert run("compress", images, "-o", out, *RANDOM) == 2
    assert_one_line_error(capsys, f"{out / 'a.psic'} exists (and 2 more outputs)")
    assert run("decompress", out, "-o", out) == 2
    assert_one_line_error(capsys, f"{out / 'a.png'} exists (and 1 more output);")
    assert (out / "a.png").read_bytes() == b"precious"


def test_missing_output_folder_is_created_in_file_and_folder_mode(tmp_path, capsys):
    image = write_image(tmp_path / "a.png", "RGB", 16, 16)
    capsys.readouterr()
    assert run("compress", image, "-o", tmp_path / "new" / "a.psic", *RANDOM) == 0
    assert f"psic: note: created the output folder {tmp_path / 'new'}" in (
        capsys.readouterr().err
    )
    folder = tmp_path / "new"
    assert run("decompress", folder, "-o", tmp_path / "dec" / "x", "--quiet") == 0
    assert (tmp_path / "dec" / "x" / "a.png").is_file()
    assert run("compress", image, "-o", tmp_path / "n2" / "a.psic", *RANDOM) == 0
    capsys.readouterr()
    assert run("decompress", tmp_path / "n2", "-o", tmp_path / "dec2") == 0
    assert f"created the output folder {tmp_path / 'dec2'}" in capsys.readouterr().err


def test_output_is_replaced_only_with_force(tmp_path, capsys):
    image = write_image(tmp_path / "a.png", "RGB", 16, 16)
    out = tmp_path / "a.psic"
    out.write_bytes(b"precious")
    capsys.readouterr()
    assert run("compress", image, "-o", out, *RANDOM) == 2
    assert_one_line_error(capsys, "a.psic exists; pass -f/--force")
    assert out.read_bytes() == b"precious"
    assert run("compress", image, "-o", out, *RANDOM, "--force") == 0
    assert out.read_bytes()[:4] != b"prec"
    png = tmp_path / "a_out.png"
    png.write_bytes(b"precious")
    capsys.readouterr()
    assert run("decompress", out, "-o", png) == 2
    assert_one_line_error(capsys, "a_out.png exists")
    assert run("decompress", out, "-o", png, "-f") == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_folders_with_progress(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    sizes = {"a": (20, 30), "b": (41, 7), "c": (64, 65)}
    write_image(images / "a.png", "RGB", *sizes["a"])
    write_image(images / "b.jpg", "L", *sizes["b"])
    write_image(images / "c.webp", "RGB", *sizes["c"])
    (images / "notes.txt").write_text("not an image")
    assert run("compress", images, "-o", tmp_path / "enc", *RANDOM) == 0
    err = capsys.readouterr().err
    assert "3/3" in err  # the progress bar
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == [
        "a.psic",
        "b.psic",
        "c.psic",
    ]
    assert run("decompress", tmp_path / "enc", "-o", tmp_path / "dec", "--quiet") == 0
    for stem, (height, width) in sizes.items():
        assert decoded(tmp_path / "dec" / f"{stem}.png").shape == (height, width, 3)


def test_several_files_into_an_existing_folder(tmp_path):
    write_image(tmp_path / "a.png", "RGB", 9, 14)
    write_image(tmp_path / "b.tif", "L", 15, 8)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["compress", tmp_path / "a.png", tmp_path / "b.tif", "-o", out]
    assert run(*argv, *RANDOM) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.psic", "b.psic"]
    psics = [out / "a.psic", out / "b.psic"]
    assert run("decompress", *psics, "-o", out, "--full") == 0
    assert decoded(out / "a.png").shape == (9, 14, 3)
    assert decoded(out / "b.png").shape == (15, 8, 3)


def test_folder_continues_after_a_bad_file(tmp_path, capsys):
    enc = tmp_path / "enc"
    enc.mkdir()
    write_image(tmp_path / "a.png", "RGB", 10, 10)
    run("compress", tmp_path / "a.png", "-o", enc / "a.psic", *RANDOM)
    (enc / "b.psic").write_bytes(b"PSIC\x01garbage")
    capsys.readouterr()
    assert run("decompress", enc, "-o", tmp_path / "dec", "--quiet") == 2
    lines = error_lines(capsys)
    assert any("b.psic" in line for line in lines)
    assert lines[-1] == "psic: error: 1 of 2 files failed"
    assert (tmp_path / "dec" / "a.png").is_file()


def test_folder_name_collision(tmp_path, capsys):
    write_image(tmp_path / "x.png", "RGB", 5, 5)
    write_image(tmp_path / "x.jpg", "RGB", 5, 5)
    assert run("compress", tmp_path, "-o", tmp_path / "out", *RANDOM) == 2
    assert "both be written" in error_lines(capsys)[-1]


def test_folder_errors_name_the_file_once(tmp_path, capsys):
    write_image(tmp_path / "a.png", "RGB", 10, 10)
    (tmp_path / "b.png").write_bytes(b"not an image")
    assert run("compress", tmp_path, "-o", tmp_path / "out", "--quiet", *RANDOM) == 2
    lines = error_lines(capsys)
    (line,) = [line for line in lines if "b.png" in line]
    assert line.count(str(tmp_path / "b.png")) == 1, line


def test_input_errors(tmp_path, capsys):
    assert run("compress", tmp_path / "missing.png", *RANDOM) == 2
    assert_one_line_error(capsys, "missing.png")
    (tmp_path / "fake.png").write_text("text")
    assert run("compress", tmp_path / "fake.png", *RANDOM) == 2
    assert_one_line_error(capsys, "not an image")
    assert run("decompress", tmp_path / "missing.psic") == 2
    assert_one_line_error(capsys, "missing.psic")
