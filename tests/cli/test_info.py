"""``psic info``, and the light commands that start without torch."""

from __future__ import annotations

import json

import pytest

from ..helpers import modules_loaded_by
from .helpers import (
    RANDOM,
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
