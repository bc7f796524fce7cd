"""Helpers of the ``psic`` command-line tests: running it, making images, reading
errors, crafting files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compressai_psic import cli
from compressai_psic.io import container
from compressai_psic.utils import crop_padding, pad_to_multiple

__all__ = [
    "RANDOM",
    "assert_one_line_error",
    "corrupt",
    "decoded",
    "error_lines",
    "random_rgb",
    "ready",
    "reference_decode",
    "rewrite",
    "run",
    "write_image",
]

#: Options of a quality-1 zoo model with random (seeded) weights.
RANDOM = ["--random-init", "--quality", "1"]


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


def rewrite(valid_psic: Path, **changes) -> Path:
    header = container.read(valid_psic)
    for name, value in changes.items():
        setattr(header, name, value)
    path = valid_psic.with_name("crafted.psic")
    container.write(path, header)
    return path
