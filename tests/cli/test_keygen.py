"""``psic keygen`` and keyed decodes from the command line: the key lives in a
0600 file, never in a .psic file, and a protected decode without it is one line."""

from __future__ import annotations

import stat

import numpy as np
import torch
from PIL import Image

from compressai_psic import load_checkpoint
from compressai_psic.io import container
from compressai_psic.models.keys import read_key_file

from ..models.helpers import tiny_zoo_model
from .helpers import assert_one_line_error, decoded, run, write_image


def keyed_checkpoint(tmp_path):
    model = tiny_zoo_model("bmshj2018-hyperprior")
    torch.manual_seed(0)
    model.make_keyed(noise_channels=4, hidden=8)
    with torch.no_grad():
        model.key_shift.net[-1].weight.mul_(30)
    path = tmp_path / "keyed.pth.tar"
    torch.save(model.state_dict(), path)
    return path


def test_keygen_writes_a_private_file_and_never_replaces_it(tmp_path, capsys):
    path = tmp_path / "publisher.key"
    assert run("keygen", "-o", path) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key_file(path)
    out = capsys.readouterr().out
    assert key.hex() not in out and "wrote" in out
    assert run("keygen", "-o", path) == 2
    assert_one_line_error(capsys, "exists", "-f/--force")
    assert read_key_file(path) == key
    assert run("keygen", "-o", path, "-f") == 0
    assert read_key_file(path) != key
    assert run("keygen", "-o", tmp_path) == 2
    assert_one_line_error(capsys, "is a folder")


def test_a_keyed_protected_decode_needs_the_key_file(tmp_path, capsys):
    checkpoint = keyed_checkpoint(tmp_path)
    image = write_image(tmp_path / "in.png", "RGB", 64, 64)
    psic = tmp_path / "in.psic"
    assert run("compress", image, "-o", psic, "-c", checkpoint) == 0
    key_file = tmp_path / "k.key"
    assert run("keygen", "-o", key_file) == 0
    capsys.readouterr()
    key = read_key_file(key_file)
    assert key.hex().encode() not in psic.read_bytes()
    assert bytes.fromhex(key.hex()) not in psic.read_bytes()

    assert run("decompress", psic, "-o", tmp_path / "p.png", "-c", checkpoint) == 2
    assert_one_line_error(capsys, "needs the publisher's key", "--key-file")
    args = ["decompress", psic, "-c", checkpoint, "-k", key_file]
    assert run(*args, "-o", tmp_path / "p.png") == 0
    assert run(*args, "-o", tmp_path / "again.png") == 0
    assert (
        run("decompress", psic, "-c", checkpoint, "--full", "-o", tmp_path / "f.png")
        == 0
    )
    protected, full = decoded(tmp_path / "p.png"), decoded(tmp_path / "f.png")
    assert np.array_equal(protected, decoded(tmp_path / "again.png"))
    assert not np.array_equal(protected, full)

    # The library gives the same pixels.
    model = load_checkpoint(checkpoint)
    model.update(force=True)
    header = container.read(psic)
    with torch.no_grad():
        x_hat = model.decompress(header.strings, header.shape, key=key)["x_hat"]
    library = x_hat[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(library, protected)


def test_key_file_errors_come_first_and_in_one_line(tmp_path, capsys):
    image = write_image(tmp_path / "in.png", "RGB", 64, 64)
    psic = tmp_path / "in.psic"
    assert run("compress", image, "-o", psic, "--random-init", "--quality", "1") == 0
    capsys.readouterr()
    assert run("decompress", psic, "-k", tmp_path / "missing.key") == 2
    assert_one_line_error(capsys, "no such key file")
    key_file = tmp_path / "k.key"
    assert run("keygen", "-o", key_file) == 0
    capsys.readouterr()
    key_file.chmod(0o644)
    assert run("decompress", psic, "-k", key_file) == 2
    assert_one_line_error(capsys, "chmod 600")
    key_file.chmod(0o600)
    assert run("decompress", psic, "-k", key_file, "-o", tmp_path / "p.png") == 2
    assert_one_line_error(capsys, "not keyed")
    assert not (tmp_path / "p.png").exists()
    Image.open(image).close()
