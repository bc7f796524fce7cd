"""``psic info``, and the light commands that start without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compressai_psic.io import container

from ..helpers import ROOT, modules_loaded_by
from .helpers import (
    RANDOM,
    assert_one_line_error,
    rewrite,
    run,
    write_image,
)


def test_info(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 40, 57)
    run(
        "compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *RANDOM, "--seed", 4
    )
    capsys.readouterr()
    assert run("info", tmp_path / "x.psic") == 0
    text = capsys.readouterr().out
    assert "architecture: bmshj2018-hyperprior" in text
    assert "seed: 4" in text and "width: 57" in text and "height: 40" in text
    assert run("info", "--json", tmp_path / "x.psic") == 0
    info = json.loads(capsys.readouterr().out)
    size = (tmp_path / "x.psic").stat().st_size
    assert info["file_bytes"] == size
    assert info["bpp"] == pytest.approx(size * 8 / (40 * 57))
    assert info["random_init"] is True
    assert info["latent_shape"] == [4, 4]  # y of a 40x57 image (padded to 64)
    assert info["hyper_latent_shape"] == [1, 1]  # z
    assert info["coded_shape"] == [1, 1]  # what decompress() is given
    assert info["payload_bpp"] < info["bpp"]


@pytest.mark.parametrize(
    "argv", [["--help"], ["info", "FILE"], ["decompress", "--help"]]
)
def test_help_and_info_import_no_torch(valid_psic, argv):
    argv = [str(valid_psic) if a == "FILE" else a for a in argv]
    code = f"from compressai_psic import cli\nassert cli.main({argv!r}) == 0"
    assert modules_loaded_by(code) == []


def test_info_shows_the_symbol_digest_and_portable(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 40, 57)
    for name, extra in (("d.psic", ["--no-portable"]), ("p.psic", [])):
        argv = ("compress", tmp_path / "in.png", "-o", tmp_path / name, *RANDOM)
        assert run(*argv, *extra) == 0
    capsys.readouterr()
    assert run("info", "--json", tmp_path / "d.psic", tmp_path / "p.psic") == 0
    default, portable = map(json.loads, capsys.readouterr().out.splitlines())
    assert default["format_version"] == portable["format_version"] == 2
    assert len(default["symbols_digest"]) == 8 and not default["portable"]
    assert portable["portable"] is True  # the default where the model has it
    assert run("decompress", tmp_path / "p.psic", "-o", tmp_path / "p.png") == 0


def test_version_1_files_decode_with_a_note(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 12, 12)
    new = tmp_path / "new.psic"
    assert (
        run("compress", tmp_path / "in.png", "-o", new, *RANDOM, "--no-portable") == 0
    )
    old = rewrite(new, symbols_digest=None)
    assert old.read_bytes()[4] == 1
    capsys.readouterr()
    assert run("info", old) == 0
    out = capsys.readouterr().out
    assert "format_version: 1" in out and "symbols_digest: none" in out
    assert run("decompress", old, "-o", tmp_path / "old.png") == 0
    assert "has no symbol digest (format version 1)" in capsys.readouterr().err


def test_a_wrong_digest_is_one_line_and_no_image(valid_psic, tmp_path, capsys):
    header = container.read(valid_psic)
    wrong = rewrite(valid_psic, symbols_digest=header.symbols_digest ^ 1)
    capsys.readouterr()
    assert run("decompress", wrong, "-o", tmp_path / "w.png") == 2
    assert_one_line_error(capsys, "not the encoder's", "the file is portable")
    assert not (tmp_path / "w.png").exists()


def test_portable_is_refused_for_autoregressive_models(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 16, 16)
    argv = ("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic")
    argv += ("--random-init", "--quality", "1", "--portable", "--arch", "mbt2018")
    capsys.readouterr()
    assert run(*argv) == 2
    assert_one_line_error(capsys, "cannot code portable bitstreams")


def test_mbt2018_mean_is_portable_on_request_only(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 16, 16)
    for name, extra in (("d.psic", []), ("p.psic", ["--portable"])):
        argv = ("compress", tmp_path / "in.png", "-o", tmp_path / name, *RANDOM)
        assert run(*argv, "--arch", "mbt2018-mean", *extra) == 0
    assert not container.read(tmp_path / "d.psic").portable
    assert container.read(tmp_path / "p.psic").portable


def test_info_of_a_missing_file_says_no_such_file(tmp_path, capsys):
    assert run("info", tmp_path / "missing.psic") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"psic: error: {tmp_path / 'missing.psic'}: no such file"


def test_latent_shapes_name_y_and_z():
    from compressai_psic.cli.info import latent_shapes

    assert latent_shapes((3, 5), 1) == {
        "latent_shape": [3, 5],
        "hyper_latent_shape": None,
    }
    assert latent_shapes((3, 5), 2) == {
        "latent_shape": [12, 20],
        "hyper_latent_shape": [3, 5],
    }


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
