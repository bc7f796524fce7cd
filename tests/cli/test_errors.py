"""Tests of the ``psic`` command line (quality-1 zoo models with random weights,
tiny checkpoints, small generated images)."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compressai_psic import cli, load_checkpoint, zoo
from compressai_psic.io import container
from compressai_psic.io.container import CHECKSUM_SIZE, PSICFile
from compressai_psic.io.files import file_sha256
from compressai_psic.utils import crop_padding, pad_to_multiple

RANDOM = ["--random-init", "--quality", "1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny convolutions gain nothing from threads; on a shared machine extra
    # threads only wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_pretrained_downloads(monkeypatch, tmp_path_factory):
    # Pretrained weights are not available offline: point the manifest and the
    # cache at empty places so that a request fails at once, without network.
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(empty / "manifest.json"))
    monkeypatch.setenv("COMPRESSAI_PSIC_CACHE", str(empty))


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), np.uint8)


def write_image(path: Path, mode: str, height: int, width: int, **save_kwargs):
    rgb = Image.fromarray(random_rgb(height, width))
    if mode == "RGBA":
        image = rgb.convert("RGBA")
    elif mode == "P":
        image = rgb.quantize(colors=12)
    elif mode == "I;16":
        values = np.random.RandomState(1).randint(0, 65536, (height, width))
        image = Image.fromarray(values.astype(np.uint16))
    else:
        image = rgb.convert(mode)
    image.save(path, **save_kwargs)
    return path


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def error_lines(capsys) -> list:
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if not line.startswith("psic: note:")]


def ready(model):
    model = model.eval()
    factor = model.downsampling_factor
    with torch.no_grad():
        model(torch.zeros(1, 3, factor, factor))
    model.update(force=True)
    return model


def reference_decode(model, image: np.ndarray, condition: str) -> np.ndarray:
    """Encode and decode with the library directly, as 8-bit pixels."""
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x_padded, padding = pad_to_multiple(x, model.downsampling_factor)
    with torch.no_grad():
        out = model.compress(x_padded)
        x_hat = model.decompress(out["strings"], out["shape"], condition=condition)
    x_hat = crop_padding(x_hat["x_hat"], padding)[0]
    return x_hat.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny trained-looking checkpoints whose protected decode differs."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = zoo.bmshj2018_hyperprior(1, N=16, M=24)
        with torch.no_grad():
            for param in model.trigger_parameters():
                param.normal_(0.0, 0.5)
        path = folder / f"tiny{seed}.pth.tar"
        torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
        paths.append(path)
    return paths


# --- round trips -----------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, height, width, suffix",
    [
        ("RGB", 40, 57, ".png"),
        ("RGBA", 33, 21, ".png"),
        ("L", 1, 1, ".png"),
        ("P", 17, 64, ".png"),
        ("I;16", 23, 45, ".png"),
        ("I;16", 9, 70, ".tif"),
        ("RGB", 64, 64, ".jpg"),
        ("RGB", 50, 3, ".webp"),
        ("CMYK", 31, 29, ".tif"),
    ],
)
def test_round_trip_keeps_size(tmp_path, capsys, mode, height, width, suffix):
    source = write_image(tmp_path / f"in{suffix}", mode, height, width)
    assert run("compress", source, "-o", tmp_path / "x.psic", *RANDOM) == 0
    out = capsys.readouterr()
    assert "bpp" in out.out
    if mode == "RGBA":
        assert "psic: warning:" in out.err and "alpha" in out.err
    assert run("decompress", tmp_path / "x.psic", "-o", tmp_path / "out.png") == 0
    assert decoded(tmp_path / "out.png").shape == (height, width, 3)


def test_cli_matches_library_decode(tmp_path):
    """Real zoo sizes: the decoder rebuilds the seeded weights and crops back."""
    image = random_rgb(40, 57, seed=5)
    Image.fromarray(image).save(tmp_path / "in.png")
    assert run("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *RANDOM) == 0
    assert run("decompress", tmp_path / "x.psic", "-o", tmp_path / "out.png") == 0
    torch.manual_seed(0)  # --seed defaults to 0
    model = ready(zoo.bmshj2018_hyperprior(1, metric="mse"))
    assert model.g_a[0].out_channels == 128  # zoo quality 1, not a tiny model
    expected = reference_decode(model, image, "protected")
    assert np.array_equal(decoded(tmp_path / "out.png"), expected)


def test_header_records_model_and_size(tmp_path):
    write_image(tmp_path / "in.png", "RGB", 40, 57)
    argv = ["compress", tmp_path / "in.png", "-o", tmp_path / "x.psic"]
    assert run(*argv, "--random-init", "-q", "2", "-m", "ms-ssim", "--seed", "9") == 0
    header = container.read(tmp_path / "x.psic")
    assert (header.architecture, header.quality, header.metric, header.seed) == (
        "bmshj2018-hyperprior",
        2,
        "ms-ssim",
        9,
    )
    assert (header.height, header.width) == (40, 57)
    assert header.shape == (1, 1)  # 64x64 after padding, /64
    assert header.checkpoint_sha256 is None


@pytest.mark.parametrize(
    "arch", ["bmshj2018-factorized", "mbt2018", "cheng2020-anchor"]
)
def test_other_architectures(tmp_path, arch):
    write_image(tmp_path / "in.png", "RGB", 20, 37)
    argv = ["compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", "-a", arch]
    assert run(*argv, *RANDOM) == 0
    assert container.read(tmp_path / "x.psic").architecture == arch
    assert run("decompress", tmp_path / "x.psic", "-o", tmp_path / "o.png") == 0
    assert decoded(tmp_path / "o.png").shape == (20, 37, 3)


def test_checkpoint_protected_full_and_both(tmp_path, checkpoints):
    image = random_rgb(30, 41, seed=3)
    Image.fromarray(image).save(tmp_path / "in.png")
    psic = tmp_path / "x.psic"
    assert run("compress", tmp_path / "in.png", "-o", psic, "-c", checkpoints[0]) == 0
    header = container.read(psic)
    assert header.checkpoint_sha256 == file_sha256(checkpoints[0])
    assert header.quality is None and header.seed is None

    assert run("decompress", psic, "-o", tmp_path / "p.png", "-c", checkpoints[0]) == 0
    argv = ["decompress", psic, "-c", checkpoints[0]]
    assert run(*argv, "-o", tmp_path / "f.png", "--full") == 0
    assert run(*argv, "-o", tmp_path / "b.png", "--both") == 0

    model = ready(load_checkpoint(checkpoints[0]))
    protected = reference_decode(model, image, "protected")
    full = reference_decode(model, image, "full")
    assert not np.array_equal(protected, full)
    assert np.array_equal(decoded(tmp_path / "p.png"), protected)
    assert np.array_equal(decoded(tmp_path / "f.png"), full)
    # --both decodes the two from one entropy decoding; same pixels.
    assert np.array_equal(decoded(tmp_path / "b_protected.png"), protected)
    assert np.array_equal(decoded(tmp_path / "b_full.png"), full)
    assert not (tmp_path / "b.png").exists()


def test_default_outputs_never_replace_files(tmp_path, capsys):
    source = write_image(tmp_path / "photo.png", "RGB", 20, 20)
    original = source.read_bytes()
    assert run("compress", source, *RANDOM) == 0
    assert (tmp_path / "photo.psic").is_file()
    assert run("decompress", tmp_path / "photo.psic", "--both") == 0
    assert (tmp_path / "photo_protected.png").is_file()
    assert (tmp_path / "photo_full.png").is_file()
    assert run("decompress", tmp_path / "photo.psic") == 2
    assert "exists" in error_lines(capsys)[-1]
    assert run("compress", source, *RANDOM) == 2
    assert source.read_bytes() == original


# --- info ---------------------------------------------------------------------------


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
    assert info["latent_shape"] == [1, 1]
    assert info["payload_bpp"] < info["bpp"]


# --- folders ------------------------------------------------------------------------


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


# --- errors ---------------------------------------------------------------------


@pytest.fixture
def valid_psic(tmp_path) -> Path:
    write_image(tmp_path / "in.png", "RGB", 12, 12)
    assert run("compress", tmp_path / "in.png", "-o", tmp_path / "v.psic", *RANDOM) == 0
    return tmp_path / "v.psic"


def assert_one_line_error(capsys, *fragments):
    lines = error_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("psic: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def corrupt(valid_psic: Path, how: str) -> Path:
    data = bytearray(valid_psic.read_bytes())
    if how == "bit-flip":
        data[len(data) // 2] ^= 0x04
    elif how == "truncated":
        data = data[: len(data) - 5]
    elif how == "magic":
        data[:4] = b"\x89PNG"
    elif how == "trailing":
        data += b"\x00\x00"
    elif how == "empty":
        data = bytearray()
    path = valid_psic.with_name(f"{how}.psic")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["bit-flip", "truncated", "magic", "trailing", "empty"])
def test_malformed_files_exit_2_in_one_line(valid_psic, capsys, how):
    path = corrupt(valid_psic, how)
    capsys.readouterr()
    assert run("decompress", path, "-o", valid_psic.with_name("o.png")) == 2
    assert_one_line_error(capsys)
    assert run("info", path) == 2
    assert_one_line_error(capsys)


def rewrite(valid_psic: Path, **changes) -> Path:
    header = container.read(valid_psic)
    for name, value in changes.items():
        setattr(header, name, value)
    path = valid_psic.with_name("crafted.psic")
    container.write(path, header)
    return path


def test_declared_size_over_bomb_limit(valid_psic, capsys):
    path = rewrite(valid_psic, height=65535, width=65535)
    capsys.readouterr()
    assert run("decompress", path, "-o", valid_psic.with_name("o.png")) == 2
    assert_one_line_error(capsys, "a 65535x65535 image", "over the limit")


def test_latent_shape_larger_than_image(valid_psic, capsys):
    path = rewrite(valid_psic, shape=(1 << 20, 1 << 20))
    capsys.readouterr()
    assert run("decompress", path, "-o", valid_psic.with_name("o.png")) == 2
    assert_one_line_error(capsys, "latent shape")


def test_garbage_strings_with_valid_checksum(valid_psic, capsys):
    header = container.read(valid_psic)
    path = rewrite(valid_psic, strings=[[b""] for _ in header.strings])
    capsys.readouterr()
    code = run("decompress", path, "-o", valid_psic.with_name("o.png"))
    # Empty strings used to reach (and crash) CompressAI's rANS decoder.
    assert code == 2
    assert_one_line_error(capsys, "corrupted bitstream", "at least 8")


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


def test_input_errors(tmp_path, capsys):
    assert run("compress", tmp_path / "missing.png", *RANDOM) == 2
    assert_one_line_error(capsys, "missing.png")
    (tmp_path / "fake.png").write_text("text")
    assert run("compress", tmp_path / "fake.png", *RANDOM) == 2
    assert_one_line_error(capsys, "not an image")
    assert run("decompress", tmp_path / "missing.psic") == 2
    assert_one_line_error(capsys, "missing.psic")


def test_decompression_bomb_image_refused(tmp_path, capsys):
    # A PNG header declaring 60000 x 60000 pixels, over twice Pillow's limit.
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    idat = zlib.compress(b"")
    chunk += struct.pack(">I", len(idat)) + b"IDAT" + idat
    chunk += struct.pack(">I", zlib.crc32(b"IDAT" + idat) & 0xFFFFFFFF)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    assert run("compress", tmp_path / "bomb.png", *RANDOM) == 2
    assert_one_line_error(capsys, "too large")


def test_unknown_output_suffix(valid_psic, capsys):
    capsys.readouterr()
    assert run("decompress", valid_psic, "-o", valid_psic.with_name("o.xyz")) == 2
    assert_one_line_error(capsys, "suffix")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable(valid_psic, capsys):
    capsys.readouterr()
    assert run("decompress", valid_psic, "--device", "cuda") == 2
    assert_one_line_error(capsys, "CUDA")


def test_usage_errors_and_help(capsys):
    assert run() == 2
    assert run("compress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("psic") for line in err)
    assert run("--help") == 0
    assert "decompress" in capsys.readouterr().out


def test_register_command_adds_a_subcommand(capsys):
    calls = []

    def add_arguments(parser):
        parser.add_argument("--level", type=int, default=1)

    def run_extra(args):
        calls.append(args.level)
        return 0

    cli.register_command(cli.Command("extra", "test command", add_arguments, run_extra))
    try:
        assert run("extra", "--level", "5") == 0
        assert calls == [5]
        run("--help")
        assert "extra" in capsys.readouterr().out
    finally:
        del cli.COMMANDS["extra"]


def test_module_entry_point_has_no_traceback(valid_psic):
    bad = corrupt(valid_psic, "bit-flip")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "compressai_psic", "decompress", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("psic: error:")


def test_compress_tensor_builds_a_valid_header():
    torch.manual_seed(0)
    model = ready(zoo.bmshj2018_factorized(1, N=16, M=24))
    spec = cli.ModelSpec("bmshj2018-factorized", 1, "mse", seed=0)
    header = cli.compress_tensor(model, torch.rand(1, 3, 17, 33), spec)
    assert isinstance(header, PSICFile)
    assert header.shape == (2, 3)  # 32x48 after padding, /16
    data = container.dumps(header)
    assert container.loads(data) == header
    assert len(data) > CHECKSUM_SIZE + header.payload_size()


# --- hardening (issue 12) ---------------------------------------------------------


@pytest.fixture
def packaged_manifest(monkeypatch):
    """The shipped manifest (the demo codec), instead of the empty test one."""
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(zoo.zoo_dir() / "manifest.json"))


def test_demo_codec_round_trip_without_flags_on_decode(
    tmp_path, capsys, packaged_manifest
):
    # The README's first examples: --model demo-psic, and a decode that finds
    # the codec's weights by the sha256 in the header.
    write_image(tmp_path / "photo.png", "RGB", 70, 90)
    assert (
        run(
            "compress",
            tmp_path / "photo.png",
            "-o",
            tmp_path / "p.psic",
            "--model",
            "demo-psic",
        )
        == 0
    )
    assert (
        run("decompress", tmp_path / "p.psic", "-o", tmp_path / "p.png", "--both") == 0
    )
    assert run("info", tmp_path / "p.psic") == 0
    out = capsys.readouterr().out
    assert zoo.manifest_entry(name="demo-psic")["sha256"][:12] in out
    assert decoded(tmp_path / "p_protected.png").shape == (70, 90, 3)
    assert decoded(tmp_path / "p_full.png").shape == (70, 90, 3)


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


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "gpu", "cpu:0"])
def test_device_is_validated(valid_psic, capsys, device):
    assert (
        run(
            "decompress",
            valid_psic,
            "-o",
            valid_psic.with_name("o.png"),
            "--device",
            device,
        )
        == 2
    )
    assert_one_line_error(capsys, f"invalid --device '{device}'", "cuda:N")
    write_image(valid_psic.with_name("in2.png"), "RGB", 8, 8)
    assert (
        run("compress", valid_psic.with_name("in2.png"), "--device", device, *RANDOM)
        == 2
    )
    assert_one_line_error(capsys, "allowed cpu, cuda")


def test_no_note_before_an_error(tmp_path, capsys):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    assert run("compress", tmp_path / "in.png", "--random-init", "--quality", "9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("psic: error:"), err


def test_folder_errors_name_the_file_once(tmp_path, capsys):
    write_image(tmp_path / "a.png", "RGB", 10, 10)
    (tmp_path / "b.png").write_bytes(b"not an image")
    assert run("compress", tmp_path, "-o", tmp_path / "out", "--quiet", *RANDOM) == 2
    lines = error_lines(capsys)
    (line,) = [line for line in lines if "b.png" in line]
    assert line.count(str(tmp_path / "b.png")) == 1, line


def test_outputs_respect_the_umask(tmp_path):
    write_image(tmp_path / "in.png", "RGB", 8, 8)
    old = os.umask(0o002)
    try:
        assert (
            run("compress", tmp_path / "in.png", "-o", tmp_path / "x.psic", *RANDOM)
            == 0
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.psic").stat().st_mode) == 0o664


def test_pixel_limit_is_shared_by_compress_and_decompress(valid_psic, capsys):
    from compressai_psic.models import guard as decode_guard

    default = decode_guard.MAX_DECODE_PIXELS
    write_image(valid_psic.with_name("big.png"), "RGB", 65, 64)
    argv = (
        "compress",
        valid_psic.with_name("big.png"),
        "-o",
        valid_psic.with_name("b.psic"),
    )
    assert run(*argv, *RANDOM, "--max-pixels", "4096") == 2
    assert_one_line_error(capsys, "pads to 64x128 = 8192 pixels", "--max-pixels")
    assert run(*argv, *RANDOM, "--max-pixels", "-1") == 2
    assert_one_line_error(capsys, "--max-pixels must be >= 0")
    assert run(*argv, *RANDOM, "--max-pixels", "0") == 0
    capsys.readouterr()
    out = ("-o", valid_psic.with_name("b.png"))
    assert (
        run("decompress", valid_psic.with_name("b.psic"), *out, "--max-pixels", "8191")
        == 2
    )
    assert_one_line_error(capsys, "8192 pixels", "over the limit of 8191")
    assert (
        run("decompress", valid_psic.with_name("b.psic"), *out, "--max-pixels", "8192")
        == 0
    )
    assert decode_guard.MAX_DECODE_PIXELS == default  # restored after each run


def test_non_finite_image_is_refused_without_hanging(tmp_path, capsys):
    values = np.full((8, 8), 0.5, dtype=np.float32)
    values[3, 3] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    assert run("compress", tmp_path / "nan.tif", *RANDOM) == 2
    assert_one_line_error(capsys, "NaN or infinite")


def test_corrupted_payloads_exit_2_without_nan_images(valid_psic, capsys):
    header = container.read(valid_psic)
    y, z = header.strings
    out = valid_psic.with_name("o.png")
    for strings in ([z, y], [[y[0][:5]], z], [y]):
        path = rewrite(valid_psic, strings=strings)
        code = run("decompress", path, "-o", out)
        if code == 0:  # swapped strings can look valid: then the image is finite
            assert decoded(out).shape == (12, 12, 3)
        else:
            assert code == 2
            assert_one_line_error(capsys, "corrupted bitstream")


@pytest.mark.parametrize(
    "argv", [["--help"], ["info", "FILE"], ["decompress", "--help"]]
)
def test_help_and_info_import_no_torch(valid_psic, argv):
    argv = [str(valid_psic) if a == "FILE" else a for a in argv]
    code = (
        "import sys; from compressai_psic import cli; "
        f"code = cli.main({argv!r}); "
        "print('MODULES', code, [k for k in ('torch', 'compressai', 'numpy', 'PIL') "
        "if k in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == "MODULES 0 []", out
