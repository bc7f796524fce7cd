"""The ``.psic`` container's messages and limits, exactly: every refusal names
its field, its value and the allowed range (``docs/FORMAT.md``), at the exact
boundary; reading from a pipe works in bounded chunks."""

from __future__ import annotations

import os
import re
import struct
import threading

import pytest

from compressai_psic.io import container
from compressai_psic.io.container import (
    MAGIC,
    MAX_ARCHITECTURE_LENGTH,
    PSICFile,
    PSICFormatError,
    describe_model,
    dumps,
    loads,
)

from . import helpers
from .helpers import with_checksum

SHA = "0123456789abcdef" * 4


def make_file(**overrides) -> PSICFile:
    return helpers.make_file(**{"architecture": "mbt2018", **overrides})


def refused(data, message: str, error=PSICFormatError):
    """``loads(data)`` raises ``error`` with exactly ``message``."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        loads(data)


def header(arch=b"a", codes=(0, 0, 0), extra=b"", size=(1, 1), shape=(1,)):
    return (
        MAGIC
        + bytes([1, len(arch)])
        + arch
        + bytes(codes)
        + extra
        + struct.pack(">HHB", *size, len(shape))
        + struct.pack(f">{len(shape)}I", *shape)
    )


# -- describe_model --


def test_describe_model_names_every_field():
    assert describe_model("m") == "m (pretrained)"
    assert describe_model("m", 3, "mse") == "m (quality 3, metric mse, pretrained)"
    assert describe_model("m", checkpoint_sha256=SHA) == (
        "m (checkpoint sha256 0123456789ab)"
    )
    assert describe_model("m", seed=7) == "m (random init, seed 7)"
    assert describe_model("m", 1, "ms-ssim", SHA, 0) == (
        "m (quality 1, metric ms-ssim, checkpoint sha256 0123456789ab, "
        "random init, seed 0)"
    )
    obj = make_file(checkpoint_sha256=SHA, seed=5)
    assert obj.model_description() == describe_model("mbt2018", 3, "mse", SHA, 5)


# -- what dumps refuses, exactly --


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(architecture=""), "architecture must be a non-empty string"),
        (dict(architecture=None), "architecture must be a non-empty string"),
        (dict(architecture=5), "architecture must be a non-empty string"),
        (
            dict(architecture="-x"),
            "invalid architecture name '-x': at most 64 ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter or digit",
        ),
        (
            dict(quality=None),
            "quality and metric must be given together (or both be None)",
        ),
        (dict(quality=9), "invalid quality 9: allowed 1..8"),
        (dict(metric="psnr"), "invalid metric 'psnr': allowed ['ms-ssim', 'mse']"),
        (
            dict(checkpoint_sha256="ab"),
            "invalid checkpoint_sha256 'ab': 64 lowercase hex digits required",
        ),
        (dict(seed=2**64), "invalid seed 18446744073709551616: allowed 0..2**64-1"),
        (dict(height=0), "invalid height 0: allowed 1..65535"),
        (dict(width=65536), "invalid width 65536: allowed 1..65535"),
        (dict(shape=5), "invalid shape 5: a tuple of 1..4 integers"),
        (
            dict(shape=(1, 2**20 + 1)),
            "invalid shape (1, 1048577): dimensions must be 1..1048576",
        ),
        (dict(strings=[]), "strings must be a list of 1..8 latents"),
        (
            dict(strings=[[b"a", b"b"]]),
            "every latent must hold exactly one string (files hold one image)",
        ),
        (dict(strings=[["text"]]), "strings must be bytes, got str"),
    ],
)
def test_dumps_messages(overrides, message):
    with pytest.raises(PSICFormatError, match=f"^{re.escape(message)}$"):
        dumps(make_file(**overrides))


def test_field_boundaries_are_inclusive():
    longest = "a" * MAX_ARCHITECTURE_LENGTH
    for obj in (
        make_file(architecture=longest),
        make_file(seed=2**64 - 1),
        make_file(seed=0),
        make_file(quality=8),
        make_file(height=65535, width=1),
        make_file(shape=(2**20,) * 4),
        make_file(strings=[[b""]] * 8),
        make_file(checkpoint_sha256=SHA, seed=1),
        make_file(strings=[[bytearray(b"ab")]]),
    ):
        assert loads(dumps(obj)) == obj
    with pytest.raises(PSICFormatError, match="^invalid architecture name"):
        dumps(make_file(architecture=longest + "a"))


def test_flags_of_checkpoint_and_seed_are_separate_bits():
    plain = dumps(make_file())
    flags_at = len(MAGIC) + 2 + len("mbt2018") + 2
    assert plain[flags_at] == 0
    assert dumps(make_file(checkpoint_sha256=SHA))[flags_at] == 0x01
    assert dumps(make_file(seed=3))[flags_at] == 0x02
    both = dumps(make_file(checkpoint_sha256=SHA, seed=3))
    assert both[flags_at] == 0x03
    assert both[flags_at + 1 : flags_at + 33] == bytes.fromhex(SHA)
    assert both[flags_at + 33 : flags_at + 41] == struct.pack(">Q", 3)


def test_unsigned_fields_above_127_round_trip():
    # Signed struct codes would refuse or misread bytes and lengths >= 128.
    obj = make_file(architecture="a" * 64, strings=[[b"x" * 200]] * 2, seed=2**63)
    data = dumps(obj)
    assert loads(data) == obj
    assert struct.pack(">I", 200) in data


class _Claims(bytes):
    """Bytes that claim another length (huge strings without the memory)."""

    claimed = 0

    def __len__(self):
        return self.claimed


def _claiming(length: int) -> bytes:
    string = _Claims(b"ab")
    string.claimed = length
    return string


@pytest.mark.parametrize("length", [2**31 + 5, 2**32 - 1])
def test_string_lengths_up_to_32_bits_are_written_unsigned(length):
    data = dumps(make_file(strings=[[_claiming(length)]]))
    assert struct.pack(">I", length) + b"ab" in data


def test_a_string_over_32_bits_is_refused():
    with pytest.raises(
        PSICFormatError, match=r"^a string is longer than 2\*\*32 - 1 bytes$"
    ):
        dumps(make_file(strings=[[_claiming(2**32)]]))


# -- what loads refuses, exactly --


def _flags(version: int, flags: int, rest: bytes = b"") -> bytes:
    """A header of ``version`` up to its flags (architecture "a", no quality)."""
    return MAGIC + bytes([version, 1]) + b"a" + bytes([0, 0, flags]) + rest


def test_loads_messages_before_the_fields():
    refused(b"x" * 40, "not a PSIC file (wrong magic bytes)")
    refused(MAGIC, "truncated file: no format version")
    refused(
        MAGIC + b"\x07" + bytes(20),
        "unsupported PSIC format version 7: this reader supports versions 1, 2",
    )
    refused(MAGIC + b"\x01" + bytes(15), "truncated file: only 20 bytes")
    refused([1, 2], "expected bytes, got list")


def test_a_file_of_magic_and_version_only_is_truncated():
    refused(MAGIC + b"\x01", "truncated file: only 5 bytes")


def test_the_shortest_lengths_reach_the_field_parser():
    # 5 + 16 bytes: long enough for the checksum, nothing left for the fields.
    refused(
        MAGIC + b"\x01" + bytes(16),
        "truncated or corrupted file: architecture length needs 1 bytes, 0 left",
    )
    refused(
        MAGIC + b"\x01\x05" + bytes(16),
        "truncated or corrupted file: architecture name needs 5 bytes, 0 left",
    )


@pytest.mark.parametrize(
    "body, message",
    [
        (MAGIC + bytes([1, 0]), "invalid architecture length 0: allowed 1..64"),
        (
            MAGIC + bytes([1, 200]) + b"a" * 200,
            "invalid architecture length 200: allowed 1..64",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([1]),
            "truncated or corrupted file: quality, metric, flags needs 3 bytes, 1 left",
        ),
        (
            MAGIC + bytes([1, 65]) + b"a" * 65,
            "invalid architecture length 65: allowed 1..64",
        ),
        (MAGIC + bytes([1, 1]) + b"\xff" + bytes(3), "architecture name is not ASCII"),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([0, 0, 0x84]),
            "unknown header flags 0x84 for format version 1",
        ),
        (_flags(1, 0x04), "unknown header flags 0x04 for format version 1"),
        (_flags(2, 0x10), "unknown header flags 0x10 for format version 2"),
        (
            _flags(2, 0x01),
            "format version 2 without a symbol digest or the portable flag: such "
            "a file is written as version 1",
        ),
        (
            _flags(2, 0x04, bytes(2)),
            "truncated or corrupted file: symbol digest needs 4 bytes, 2 left",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([1, 3, 0]),
            "unknown metric code 3: allowed 0 (none), 1 (mse), 2 (ms-ssim)",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([200, 1, 0]),
            "invalid quality 200: allowed 0 (none) or 1..8",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([0, 2, 0]),
            "quality and metric must be given together (or both be none)",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([0, 0, 1]) + bytes(31),
            "truncated or corrupted file: checkpoint sha256 needs 32 bytes, 31 left",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes([0, 0, 2]) + bytes(7),
            "truncated or corrupted file: seed needs 8 bytes, 7 left",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes(3) + bytes(4),
            "truncated or corrupted file: image size and shape length needs 5 "
            "bytes, 4 left",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes(3) + struct.pack(">HHB", 1, 1, 5),
            "invalid shape length 5: allowed 1..4",
        ),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes(3) + struct.pack(">HHB", 1, 1, 2),
            "truncated or corrupted file: shape needs 8 bytes, 0 left",
        ),
        (
            header(),
            "truncated or corrupted file: number of latents, batch size "
            "needs 2 bytes, 0 left",
        ),
        (header() + bytes([9, 1]), "invalid number of latents 9: allowed 1..8"),
        (header() + bytes([200, 1]), "invalid number of latents 200: allowed 1..8"),
        (
            header() + bytes([1, 2]),
            "invalid batch size 2: files hold exactly 1 image",
        ),
        (
            header() + bytes([2, 1]) + struct.pack(">I", 0),
            "truncated or corrupted file: length of string 1 needs 4 bytes, 0 left",
        ),
        (
            header() + bytes([1, 1]) + struct.pack(">I", 3) + b"ab",
            "truncated or corrupted file: string 0 needs 3 bytes, 2 left",
        ),
        (
            header() + bytes([1, 1]) + struct.pack(">I", 1) + b"abc",
            "corrupted file: 2 unexpected bytes after the last string",
        ),
        (
            header(size=(0, 1)) + bytes([1, 1]) + struct.pack(">I", 0),
            "invalid height 0: allowed 1..65535",
        ),
    ],
)
def test_loads_messages(body, message):
    refused(with_checksum(body), message)


def test_the_last_field_byte_may_not_overrun_into_the_checksum():
    # A string declared one byte too long would eat the checksum's first byte.
    body = header() + bytes([1, 1]) + struct.pack(">I", 2) + b"a"
    refused(
        with_checksum(body),
        "truncated or corrupted file: string 0 needs 2 bytes, 1 left",
    )


def test_checksum_mismatch_message_and_signed_fields():
    data = bytearray(dumps(make_file()))
    data[-1] ^= 1
    refused(bytes(data), "corrupted file: checksum mismatch")
    # Bytes >= 128 are unsigned in the layout (quality, metric and flags codes,
    # the architecture length, the seed): read as such, they are refused by
    # range, not misread.
    seed = with_checksum(
        MAGIC
        + bytes([1, 1])
        + b"a"
        + bytes([0, 0, 2])
        + struct.pack(">Q", 2**64 - 1)
        + struct.pack(">HHBI", 1, 1, 1, 1)
        + bytes([1, 1])
        + struct.pack(">I", 0)
    )
    assert loads(seed).seed == 2**64 - 1
    name = "b" * 64
    assert loads(dumps(make_file(architecture=name))).architecture == name


# -- read: size limits, pipes --


def _serve(fifo, data):
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    return writer


def test_read_limit_message_and_boundary(tmp_path):
    path = tmp_path / "x.psic"
    size = container.write(path, make_file())
    assert container.read(path, max_size=size) == make_file()
    with pytest.raises(
        PSICFormatError,
        match=f"^{re.escape(f'{path}: file is larger than the {size - 1}-byte')}",
    ):
        container.read(path, max_size=size - 1)


def test_read_from_a_pipe_at_the_limit_and_one_byte_over(tmp_path):
    fifo = tmp_path / "fifo.psic"
    os.mkfifo(fifo)
    data = dumps(make_file())
    writer = _serve(fifo, data)
    try:
        assert container.read(fifo, max_size=len(data)) == make_file()
    finally:
        writer.join()
    writer = _serve(fifo, data)
    try:
        message = f"{fifo}: file is larger than the {len(data) - 1}-byte limit "
        with pytest.raises(PSICFormatError, match=f"^{re.escape(message)}"):
            container.read(fifo, max_size=len(data) - 1)
    finally:
        writer.join()


def test_read_from_a_pipe_of_several_chunks(tmp_path):
    # More than the 1 MiB read per chunk: every chunk must be kept.
    fifo = tmp_path / "fifo.psic"
    os.mkfifo(fifo)
    obj = make_file(strings=[[bytes(range(256)) * 9000]])
    writer = _serve(fifo, dumps(obj))
    try:
        assert container.read(fifo) == obj
    finally:
        writer.join()


def test_a_file_that_grew_after_its_size_was_taken(tmp_path, monkeypatch):
    # The size the file system reports is not trusted: a file that holds more
    # than max_size bytes is refused even when fstat said exactly max_size.
    path = tmp_path / "x.psic"
    size = container.write(path, make_file())
    real_fstat = os.fstat

    def fstat(fd):
        result = real_fstat(fd)
        return os.stat_result((*result[:6], size - 1, *result[7:]))

    monkeypatch.setattr(container.os, "fstat", fstat)
    message = f"{path}: file is larger than the {size - 1}-byte limit of this reader"
    with pytest.raises(PSICFormatError, match=f"^{re.escape(message)}$"):
        container.read(path, max_size=size - 1)
    assert container.read(path, max_size=size) == make_file()
