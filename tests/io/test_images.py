"""Tests of image loading and saving (modes, bit depths, orientation, limits)."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from compressai_psic.io.images import (
    ImageLoadError,
    is_image_file,
    load_image,
    pil_to_tensor,
    save_image,
    tensor_to_pil,
)

from ..helpers import modules_loaded_by

H, W = 13, 17


@pytest.fixture
def rgb_array() -> np.ndarray:
    return np.random.RandomState(0).randint(0, 256, (H, W, 3), dtype=np.uint8)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    assert tensor.dtype == torch.float32
    assert tensor.shape[:2] == (1, 3)
    return tensor[0].permute(1, 2, 0).numpy()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def handmade_png(width: int, height: int, bit_depth: int, color_type: int, rows):
    """A PNG written byte by byte (Pillow cannot write 16-bit RGB)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".ppm"])
def test_rgb_lossless_formats_are_exact(tmp_path, rgb_array, suffix):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(rgb_array).save(path)
    x = load_image(path)
    assert x.shape == (1, 3, H, W)
    np.testing.assert_allclose(as_array(x), rgb_array / 255.0, atol=1e-6)


def test_webp_lossless_is_exact(tmp_path, rgb_array):
    path = tmp_path / "img.webp"
    Image.fromarray(rgb_array).save(path, lossless=True)
    np.testing.assert_allclose(as_array(load_image(path)), rgb_array / 255.0, atol=1e-6)


def test_jpeg_loads_close_to_source(tmp_path):
    smooth = np.tile(np.linspace(0, 255, W, dtype=np.uint8)[None, :, None], (H, 1, 3))
    path = tmp_path / "img.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    x = load_image(path)
    assert x.shape == (1, 3, H, W)
    assert np.abs(as_array(x) - smooth / 255.0).mean() < 0.03


def test_rgba_drops_alpha_with_warning(tmp_path, rgb_array):
    alpha = np.full((H, W, 1), 7, dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(np.concatenate([rgb_array, alpha], axis=2), mode="RGBA").save(path)
    with pytest.warns(UserWarning, match="alpha"):
        x = load_image(path)
    # Colour kept as stored, not composited onto a background.
    np.testing.assert_allclose(as_array(x), rgb_array / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_is_replicated(tmp_path, mode):
    gray = np.random.RandomState(1).randint(0, 256, (H, W), dtype=np.uint8)
    image = Image.fromarray(gray).convert(mode)
    path = tmp_path / "img.png"
    image.save(path)
    x = as_array(load_image(path))
    expected = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    for channel in range(3):
        np.testing.assert_allclose(x[:, :, channel], expected, atol=1e-6)


def test_la_drops_alpha(tmp_path):
    gray = np.random.RandomState(2).randint(0, 256, (H, W), dtype=np.uint8)
    la = np.stack([gray, np.full_like(gray, 200)], axis=2)
    path = tmp_path / "img.png"
    Image.fromarray(la, mode="LA").save(path)
    with pytest.warns(UserWarning, match="alpha"):
        x = as_array(load_image(path))
    np.testing.assert_allclose(x[:, :, 1], gray / 255.0, atol=1e-6)


def test_palette_is_expanded(tmp_path, rgb_array):
    image = Image.fromarray(rgb_array).quantize(colors=16)
    path = tmp_path / "img.png"
    image.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no transparency: no warning
        x = load_image(path)
    expected = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(as_array(x), expected, atol=1e-6)


def test_palette_with_transparency_warns(tmp_path, rgb_array):
    image = Image.fromarray(rgb_array).quantize(colors=8)
    path = tmp_path / "img.png"
    image.save(path, transparency=0)
    with pytest.warns(UserWarning, match="alpha"):
        x = load_image(path)
    assert x.shape == (1, 3, H, W)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "img.jpg"
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(path, quality=100)
    x = as_array(load_image(path))
    # Pure red in CMYK; Pillow's conversion is naive but the hue must survive.
    assert x[..., 0].mean() > 0.9 and x[..., 1].mean() < 0.1


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grayscale_keeps_precision(tmp_path, suffix):
    values = np.random.RandomState(3).randint(0, 65536, (H, W)).astype(np.uint16)
    path = tmp_path / f"img{suffix}"
    Image.fromarray(values).save(path)
    x = as_array(load_image(path))
    # Finer than 8 bits: the low byte matters.
    np.testing.assert_allclose(x[:, :, 2], values / 65535.0, atol=1e-6)


def test_32bit_integer_mode_scaled_as_16bit():
    values = np.array([[0, 65535, 32768, 70000]], dtype=np.int32)
    x = as_array(pil_to_tensor(Image.fromarray(values, mode="I")))
    np.testing.assert_allclose(x[0, :, 0], [0.0, 1.0, 32768 / 65535, 1.0], atol=1e-6)


def test_float_mode_clipped():
    values = np.array([[-0.5, 0.25, 2.0]], dtype=np.float32)
    x = as_array(pil_to_tensor(Image.fromarray(values, mode="F")))
    np.testing.assert_allclose(x[0, :, 1], [0.0, 0.25, 1.0])


def test_16bit_rgb_png(tmp_path):
    values = np.random.RandomState(4).randint(0, 65536, (5, 6, 3)).astype(">u2")
    path = tmp_path / "img.png"
    path.write_bytes(handmade_png(6, 5, 16, 2, [row.tobytes() for row in values]))
    x = as_array(load_image(path))
    assert x.shape == (5, 6, 3)
    # Pillow reads 16-bit RGB at 8-bit precision; one 8-bit step at most.
    assert np.abs(x - values / 65535.0).max() <= 1 / 255 + 1e-6


def test_exif_orientation_applied(tmp_path, rgb_array):
    image = Image.fromarray(rgb_array)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "img.jpg"
    image.save(path, exif=exif, quality=100)
    x = load_image(path)
    assert x.shape == (1, 3, W, H)


def test_multiframe_uses_first_frame(tmp_path):
    frames = [
        Image.new("RGB", (W, H), (255, 0, 0)),
        Image.new("RGB", (W, H), (0, 0, 255)),
    ]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="frames"):
        x = as_array(load_image(path))
    assert x[..., 0].mean() > 0.9 and x[..., 2].mean() < 0.1


def test_decompression_bomb_is_refused(tmp_path):
    # The header declares 60000 x 60000 pixels (over twice Pillow's default
    # limit); the check fires before any pixel is decoded.
    path = tmp_path / "bomb.png"
    path.write_bytes(handmade_png(60000, 60000, 8, 0, [b""])[:-12])
    assert Image.MAX_IMAGE_PIXELS is not None
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS is not None


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(path)


def test_disallowed_format(tmp_path, rgb_array):
    path = tmp_path / "img.png"
    Image.fromarray(rgb_array).save(path)
    with pytest.raises(ImageLoadError, match="allowed: JPEG"):
        load_image(path, formats=("JPEG",))


def test_truncated_image(tmp_path, rgb_array):
    path = tmp_path / "img.png"
    noisy = np.random.RandomState(5).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cannot decode"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


def test_save_round_trip(tmp_path, rgb_array):
    x = torch.from_numpy(rgb_array).permute(2, 0, 1).float().div(255).unsqueeze(0)
    path = tmp_path / "out.png"
    save_image(x, path)
    assert np.array_equal(np.asarray(Image.open(path)), rgb_array)
    # (3, H, W) tensors too, and values outside [0, 1] are clamped.
    save_image(x[0] * 2 - 0.5, path)
    expected = np.clip(np.round((rgb_array / 255.0 * 2 - 0.5) * 255), 0, 255)
    assert np.abs(np.asarray(Image.open(path)).astype(int) - expected).max() <= 1


def test_tensor_to_pil_refuses_bad_shapes():
    with pytest.raises(ValueError, match="batch of 2"):
        tensor_to_pil(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="expected a"):
        tensor_to_pil(torch.zeros(1, 4, 4, 4))


def test_is_image_file(tmp_path):
    (tmp_path / "a.PNG").write_bytes(b"")
    (tmp_path / "b.psic").write_bytes(b"")
    (tmp_path / "c.jpg").mkdir()
    assert is_image_file(tmp_path / "a.PNG")
    assert not is_image_file(tmp_path / "b.psic")
    assert not is_image_file(tmp_path / "c.jpg")


def test_bomb_between_one_and_two_times_the_limit_is_refused(tmp_path):
    # Issue 12: Pillow only warns there; compress then tried 5.8 GB.
    path = tmp_path / "big.png"
    path.write_bytes(handmade_png(12000, 10000, 8, 0, [b""])[:-12])
    assert Image.MAX_IMAGE_PIXELS < 12000 * 10000 < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_float_pixels_are_refused(tmp_path, bad):
    # Issue 12: one NaN pixel in a float TIFF made psic compress loop forever.
    values = np.full((4, 5), 0.5, dtype=np.float32)
    values[2, 3] = bad
    path = tmp_path / "float.tif"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ImageLoadError, match="1 pixels are NaN or infinite"):
        load_image(path)


def test_importing_images_loads_neither_torch_nor_pillow():
    code = (
        "import compressai_psic.io.images as m\n"
        "assert m.IMAGE_EXTENSIONS and m.ImageLoadError"
    )
    assert modules_loaded_by(code, ("torch", "PIL", "numpy")) == []
