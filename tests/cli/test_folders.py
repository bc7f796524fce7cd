"""Folders and several files: output names, progress, one bad file among good
ones."""

from __future__ import annotations

from .helpers import (
    RANDOM,
    decoded,
    error_lines,
    run,
    write_image,
)


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
