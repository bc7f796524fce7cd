"""What a new user meets first: typos fail at once, nothing is replaced without
``--force``, errors name the file, pipes close quietly, folders report sizes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compressai_psic.cli import models as cli_models

from ..helpers import ROOT
from .helpers import RANDOM, assert_one_line_error, run, write_image


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


def test_folder_compress_warns_only_about_files_it_writes(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "big.png", "RGBA", 96, 96)
    write_image(images / "small.png", "RGBA", 8, 8)
    capsys.readouterr()
    argv = ["compress", images, "-o", tmp_path / "out", "--max-pixels", "4096"]
    assert run(*argv, *RANDOM, "--quiet") == 2
    err = capsys.readouterr().err
    assert "big.png: 96x96 pads to" in err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "small.png: alpha channel dropped" in warnings[0]


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


def test_folder_mode_prints_size_and_bpp_per_file(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", "RGB", 16, 24)
    write_image(images / "b.png", "RGB", 20, 12)
    assert run("compress", images, "-o", tmp_path / "enc", *RANDOM) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, pixels in (("a", 16 * 24), ("b", 20 * 12)):
        (line,) = [x for x in lines if x.startswith(str(images / f"{name}.png"))]
        size = (tmp_path / "enc" / f"{name}.psic").stat().st_size
        assert f"{size} bytes, {size * 8 / pixels:.4f} bpp" in line


@pytest.mark.slow
def test_info_into_a_closed_pipe_exits_quietly(valid_psic):
    command = (
        f"set -o pipefail; {sys.executable} -m compressai_psic info "
        f"{valid_psic} {valid_psic} | head -2"
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 2


def test_version(capsys):
    from compressai_psic import __version__

    assert run("--version") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"psic {__version__} (compressai ")


@pytest.mark.slow
def test_demo_without_open_clip_names_the_extra(tmp_path):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'open_clip':\n"
        "            raise ModuleNotFoundError(\"No module named 'open_clip'\")\n"
        "sys.meta_path.insert(0, Block())\n"
        "from compressai_psic.cli import main\n"
        f"sys.exit(main(['demo', '-n', '2', '-o', {str(tmp_path / 'd')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "psic demo needs open_clip" in lines[0]
    assert "pip install 'compressai-psic[demo]'" in lines[0]
    assert not (tmp_path / "d").exists()
