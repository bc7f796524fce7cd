"""Tests of the ``.psic`` container: round trips, validation and parser fuzzing."""

from __future__ import annotations

import os
import re
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressai_psic.io import container
from compressai_psic.io.container import (
    CHECKSUM_SIZE,
    MAGIC,
    MAX_ARCHITECTURE_LENGTH,
    ModelMismatchError,
    PSICFile,
    PSICFormatError,
    check_compatible,
    describe_model,
    dumps,
    loads,
)

from ..helpers import modules_loaded_by
from . import helpers
from .helpers import make_file, with_checksum

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


architectures = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
zoo_identity = st.tuples(st.integers(1, 8), st.sampled_from(["mse", "ms-ssim"]))
psic_files = st.builds(
    PSICFile,
    architecture=architectures,
    quality=st.none(),
    metric=st.none(),
    checkpoint_sha256=st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex),
    height=st.integers(1, 65535),
    width=st.integers(1, 65535),
    shape=st.lists(st.integers(1, 1 << 20), min_size=1, max_size=4).map(tuple),
    strings=st.lists(
        st.lists(st.binary(max_size=64), min_size=1, max_size=1),
        min_size=1,
        max_size=8,
    ),
    seed=st.none() | st.integers(0, 2**64 - 1),
    symbols_digest=st.none() | st.integers(0, 2**32 - 1),
    portable=st.booleans(),
)


@st.composite
def any_valid_file(draw) -> PSICFile:
    obj = draw(psic_files)
    identity = draw(st.none() | zoo_identity)
    if identity is not None:
        obj.quality, obj.metric = identity
    return obj


@FUZZ
@given(any_valid_file())
def test_round_trip_of_random_valid_objects(obj):
    data = dumps(obj)
    assert loads(data) == obj
    # Bytes-like inputs parse the same way.
    assert loads(bytearray(data)) == obj
    assert loads(memoryview(data)) == obj


def test_round_trip_file(tmp_path):
    obj = make_file(checkpoint_sha256="ab" * 32, quality=None, metric=None, seed=7)
    path = tmp_path / "x.psic"
    size = container.write(path, obj)
    assert size == path.stat().st_size == len(dumps(obj))
    assert container.read(path) == obj
    # No temporary file is left next to the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.psic"]


def test_layout_matches_documentation():
    obj = make_file(strings=[[b"abc"], [b"zz"]], seed=5)
    data = dumps(obj)
    expected_body = (
        b"PSIC"
        + bytes([1, len(b"bmshj2018-hyperprior")])
        + b"bmshj2018-hyperprior"
        + bytes([3, 1, 0x02])  # quality 3, metric mse, flags: seed present
        + struct.pack(">Q", 5)
        + struct.pack(">HHB", 40, 57, 2)
        + struct.pack(">II", 1, 1)
        + bytes([2, 1])  # two latents, batch 1
        + struct.pack(">I", 3)
        + b"abc"
        + struct.pack(">I", 2)
        + b"zz"
    )
    assert data == with_checksum(expected_body)
    # The checksum printed in docs/FORMAT.md.
    assert data[-CHECKSUM_SIZE:].hex() == "5228265921875e1c070358f3b5ef7ce3"


def test_version_2_layout_matches_documentation():
    obj = make_file(strings=[[b"abc"], [b"zz"]], seed=5)
    obj.symbols_digest = 0x1234ABCD
    obj.portable = True
    data = dumps(obj)
    assert obj.format_version == 2
    expected_body = (
        b"PSIC"
        + bytes([2, len(b"bmshj2018-hyperprior")])
        + b"bmshj2018-hyperprior"
        + bytes([3, 1, 0x0E])  # flags: seed, symbol digest, portable
        + struct.pack(">Q", 5)
        + struct.pack(">I", 0x1234ABCD)
        + struct.pack(">HHB", 40, 57, 2)
        + struct.pack(">II", 1, 1)
        + bytes([2, 1])
        + struct.pack(">I", 3)
        + b"abc"
        + struct.pack(">I", 2)
        + b"zz"
    )
    assert data == with_checksum(expected_body)
    assert loads(data) == obj


def test_files_without_the_new_fields_stay_version_1():
    obj = make_file()
    assert obj.format_version == 1
    assert dumps(obj)[4] == 1
    for fields in (dict(symbols_digest=0), dict(portable=True)):
        assert dumps(make_file(**fields))[4] == 2


def test_the_digest_takes_every_32_bit_value():
    for digest in (0, 2**32 - 1):
        assert loads(dumps(make_file(symbols_digest=digest))).symbols_digest == digest


def test_every_truncation_of_a_version_2_file_is_refused():
    data = dumps(make_file(symbols_digest=7, portable=True, seed=1))
    for length in range(len(data)):
        with pytest.raises(PSICFormatError):
            loads(data[:length])


def test_model_description_and_payload():
    obj = make_file(seed=3)
    assert obj.payload_size() == 5
    assert "bmshj2018-hyperprior" in obj.model_description()
    assert "seed 3" in obj.model_description()
    assert "pretrained" in make_file().model_description()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(architecture=""), "architecture"),
        (dict(architecture="a" * 65), "architecture"),
        (dict(architecture="bad name"), "architecture"),
        (dict(architecture="-leading"), "architecture"),
        (dict(quality=9), "quality"),
        (dict(quality=0), "quality"),
        (dict(quality=True), "quality"),
        (dict(metric="psnr"), "metric"),
        (dict(metric=None), "together"),
        (dict(checkpoint_sha256="XYZ"), "checkpoint_sha256"),
        (dict(checkpoint_sha256="AB" * 32), "checkpoint_sha256"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**64), "seed"),
        (dict(symbols_digest=-1), "symbols_digest"),
        (dict(symbols_digest=2**32), "symbols_digest"),
        (dict(symbols_digest=1.0), "symbols_digest"),
        (dict(portable=1), "portable"),
        (dict(height=0), "height"),
        (dict(width=65536), "width"),
        (dict(shape=()), "shape"),
        (dict(shape=(1, 2, 3, 4, 5)), "shape"),
        (dict(shape=(0, 1)), "shape"),
        (dict(shape=(1, 2**20 + 1)), "shape"),
        (dict(strings=[]), "strings"),
        (dict(strings=[[b"a"]] * 9), "strings"),
        (dict(strings=[[b"a", b"b"]]), "exactly one"),
        (dict(strings=[["text"]]), "bytes"),
    ],
)
def test_dumps_refuses_invalid_fields(overrides, message):
    with pytest.raises(PSICFormatError, match=message):
        dumps(make_file(**overrides))


def test_invalid_fields_error_is_a_value_error():
    with pytest.raises(ValueError, match="allowed"):
        dumps(make_file(metric="psnr"))


# --- malformed inputs ---------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_format_error_only(data):
    with pytest.raises(PSICFormatError):
        loads(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_valid_prefix_raise_format_error_only(tail):
    # Most random inputs fail at the magic; this one reaches the field parser.
    with pytest.raises(PSICFormatError):
        loads(MAGIC + b"\x01" + tail)


@FUZZ
@given(any_valid_file(), st.data())
def test_mutations_with_repaired_checksum_never_escape(obj, data):
    """Corrupt the fields (keeping the checksum right) to reach every check."""
    body = bytearray(dumps(obj)[:-CHECKSUM_SIZE])
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    extra = data.draw(st.binary(max_size=8))
    mutated = with_checksum(bytes(body[:cut]) + extra)
    try:
        parsed = loads(mutated)
    except PSICFormatError:
        return
    # Whatever parses must be a valid object that serialises back to the input.
    assert dumps(parsed) == mutated


def test_every_truncation_is_refused():
    data = dumps(make_file(checkpoint_sha256="0f" * 32, seed=1))
    for length in range(len(data)):
        with pytest.raises(PSICFormatError):
            loads(data[:length])


def test_trailing_bytes_are_refused():
    data = dumps(make_file())
    with pytest.raises(PSICFormatError):
        loads(data + b"\x00")
    # Even when the checksum is recomputed over the longer body.
    with pytest.raises(PSICFormatError, match="unexpected bytes"):
        loads(with_checksum(data[:-CHECKSUM_SIZE] + b"\x00"))


def test_every_single_bit_flip_is_refused():
    data = dumps(make_file(strings=[[b"ab"], [b"c"]], seed=2))
    for byte_index in range(len(data)):
        for bit in range(8):
            corrupted = bytearray(data)
            corrupted[byte_index] ^= 1 << bit
            with pytest.raises(PSICFormatError):
                loads(bytes(corrupted))


def test_bit_flip_in_payload_reports_checksum():
    data = bytearray(dumps(make_file(strings=[[b"abcdef"], [b"zz"]])))
    data[-CHECKSUM_SIZE - 1] ^= 0x10
    with pytest.raises(PSICFormatError, match="checksum"):
        loads(bytes(data))


def test_wrong_magic_and_version_have_clear_messages():
    data = dumps(make_file())
    with pytest.raises(PSICFormatError, match="not a PSIC file"):
        loads(b"\x89PNG" + data[4:])
    with pytest.raises(PSICFormatError, match="version 7"):
        loads(data[:4] + b"\x07" + data[5:])


def _header_up_to_strings(num_latents: int = 1) -> bytes:
    return (
        MAGIC
        + bytes([1, 1])
        + b"a"
        + bytes([0, 0, 0])
        + struct.pack(">HHB", 1, 1, 1)
        + struct.pack(">I", 1)
        + bytes([num_latents, 1])
    )


@pytest.mark.parametrize("length", [2**32 - 1, 2**31, 10**9, 100])
def test_huge_declared_string_length_is_refused(length):
    # A valid checksum, so the declared length itself must be caught.
    data = with_checksum(_header_up_to_strings() + struct.pack(">I", length) + b"xy")
    with pytest.raises(PSICFormatError, match="needs"):
        loads(data)


@pytest.mark.parametrize(
    "body, message",
    [
        (MAGIC + bytes([1, 0]), "architecture length"),
        (MAGIC + bytes([1, 200]) + b"a" * 200, "architecture length"),
        (MAGIC + bytes([1, 1]) + b"\xff" + bytes(3), "ASCII"),
        (MAGIC + bytes([1, 1]) + b"a" + bytes([0, 0, 0x80]), "flags"),
        (MAGIC + bytes([1, 1]) + b"a" + bytes([0, 9, 0]), "metric code"),
        (MAGIC + bytes([1, 1]) + b"a" + bytes([9, 1, 0]), "quality"),
        (MAGIC + bytes([1, 1]) + b"a" + bytes([3, 0, 0]), "together"),
        (
            MAGIC + bytes([1, 1]) + b"a" + bytes(3) + struct.pack(">HHB", 1, 1, 200),
            "shape length",
        ),
        (
            MAGIC
            + bytes([1, 1])
            + b"a"
            + bytes(3)
            + struct.pack(">HHBI", 1, 1, 1, 1)
            + bytes([255, 1]),
            "number of latents",
        ),
        (
            MAGIC
            + bytes([1, 1])
            + b"a"
            + bytes(3)
            + struct.pack(">HHBI", 1, 1, 1, 1)
            + bytes([1, 64]),
            "batch size",
        ),
        (
            MAGIC
            + bytes([1, 1])
            + b"a"
            + bytes(3)
            + struct.pack(">HHBI", 0, 1, 1, 1)
            + bytes([1, 1])
            + struct.pack(">I", 0),
            "height",
        ),
        (
            MAGIC
            + bytes([1, 1])
            + b"a"
            + bytes(3)
            + struct.pack(">HHBI", 1, 1, 1, 0)
            + bytes([1, 1])
            + struct.pack(">I", 0),
            "shape",
        ),
    ],
)
def test_bad_fields_with_valid_checksum(body, message):
    with pytest.raises(PSICFormatError, match=message):
        loads(with_checksum(body))


def test_minimal_handcrafted_file_parses():
    data = with_checksum(_header_up_to_strings() + struct.pack(">I", 0))
    obj = loads(data)
    assert obj.architecture == "a"
    assert obj.quality is None and obj.metric is None
    assert obj.strings == [[b""]]
    assert obj.shape == (1,)


def test_loads_refuses_non_bytes():
    with pytest.raises(PSICFormatError, match="expected bytes"):
        loads("PSIC")  # type: ignore[arg-type]


def test_read_enforces_size_limit(tmp_path):
    path = tmp_path / "big.psic"
    data = dumps(make_file(strings=[[b"x" * 1000]]))
    path.write_bytes(data)
    assert container.read(path, max_size=len(data)).strings == [[b"x" * 1000]]
    with pytest.raises(PSICFormatError, match="limit"):
        container.read(path, max_size=len(data) - 1)


def test_read_missing_file_is_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        container.read(tmp_path / "missing.psic")


# --- model identity -------------------------------------------------------------


def test_check_compatible_accepts_same_model():
    check_compatible(make_file(seed=4), "bmshj2018-hyperprior", 3, "mse", None, 4)
    sha = "cd" * 32
    obj = make_file(quality=None, metric=None, checkpoint_sha256=sha)
    check_compatible(obj, "bmshj2018-hyperprior", checkpoint_sha256=sha.upper())


@pytest.mark.parametrize(
    "given_identity",
    [
        ("mbt2018-mean", 3, "mse", None, None),
        ("bmshj2018-hyperprior", 4, "mse", None, None),
        ("bmshj2018-hyperprior", 3, "ms-ssim", None, None),
        ("bmshj2018-hyperprior", 3, "mse", None, 0),
        ("bmshj2018-hyperprior", None, None, "ef" * 32, None),
    ],
)
def test_check_compatible_names_both_models(given_identity):
    obj = make_file()
    with pytest.raises(ModelMismatchError) as info:
        check_compatible(obj, *given_identity)
    message = str(info.value)
    assert obj.model_description() in message
    assert given_identity[0] in message
    assert isinstance(info.value, PSICFormatError)


def test_read_allocates_what_the_file_holds(tmp_path):
    # Issue 12: read() reserved max_size + 1 bytes (1 GiB by default).
    path = tmp_path / "x.psic"
    container.write(path, make_file())
    assert container.read(path, max_size=1 << 50) == make_file()
    with pytest.raises(PSICFormatError, match="10-byte limit"):
        container.read(path, max_size=10)


def test_read_from_a_pipe(tmp_path):
    fifo = tmp_path / "fifo.psic"
    os.mkfifo(fifo)
    data = dumps(make_file())
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    try:
        assert container.read(fifo) == make_file()
    finally:
        writer.join()
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    try:
        with pytest.raises(PSICFormatError, match="limit"):
            container.read(fifo, max_size=len(data) - 1)
    finally:
        writer.join()


def test_container_needs_no_torch():
    loaded = modules_loaded_by(
        "import compressai_psic.io.container, compressai_psic.cli"
    )
    assert loaded == []


SHA = "0123456789abcdef" * 4


def mbt_file(**overrides) -> PSICFile:
    """A valid file of an mbt2018 model (the messages name its architecture)."""
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


class _Claims(bytes):
    """Bytes that claim another length (huge strings without the memory)."""

    claimed = 0

    def __len__(self):
        return self.claimed


def _claiming(length: int) -> bytes:
    string = _Claims(b"ab")
    string.claimed = length
    return string


def _serve(fifo, data):
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    return writer


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
    obj = mbt_file(checkpoint_sha256=SHA, seed=5)
    assert obj.model_description() == describe_model("mbt2018", 3, "mse", SHA, 5)


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
        dumps(mbt_file(**overrides))


def test_field_boundaries_are_inclusive():
    longest = "a" * MAX_ARCHITECTURE_LENGTH
    for obj in (
        mbt_file(architecture=longest),
        mbt_file(seed=2**64 - 1),
        mbt_file(seed=0),
        mbt_file(quality=8),
        mbt_file(height=65535, width=1),
        mbt_file(shape=(2**20,) * 4),
        mbt_file(strings=[[b""]] * 8),
        mbt_file(checkpoint_sha256=SHA, seed=1),
        mbt_file(strings=[[bytearray(b"ab")]]),
    ):
        assert loads(dumps(obj)) == obj
    with pytest.raises(PSICFormatError, match="^invalid architecture name"):
        dumps(mbt_file(architecture=longest + "a"))


def test_flags_of_checkpoint_and_seed_are_separate_bits():
    plain = dumps(mbt_file())
    flags_at = len(MAGIC) + 2 + len("mbt2018") + 2
    assert plain[flags_at] == 0
    assert dumps(mbt_file(checkpoint_sha256=SHA))[flags_at] == 0x01
    assert dumps(mbt_file(seed=3))[flags_at] == 0x02
    both = dumps(mbt_file(checkpoint_sha256=SHA, seed=3))
    assert both[flags_at] == 0x03
    assert both[flags_at + 1 : flags_at + 33] == bytes.fromhex(SHA)
    assert both[flags_at + 33 : flags_at + 41] == struct.pack(">Q", 3)


def test_unsigned_fields_above_127_round_trip():
    # Signed struct codes would refuse or misread bytes and lengths >= 128.
    obj = mbt_file(architecture="a" * 64, strings=[[b"x" * 200]] * 2, seed=2**63)
    data = dumps(obj)
    assert loads(data) == obj
    assert struct.pack(">I", 200) in data


@pytest.mark.parametrize("length", [2**31 + 5, 2**32 - 1])
def test_string_lengths_up_to_32_bits_are_written_unsigned(length):
    data = dumps(mbt_file(strings=[[_claiming(length)]]))
    assert struct.pack(">I", length) + b"ab" in data


def test_a_string_over_32_bits_is_refused():
    with pytest.raises(
        PSICFormatError, match=r"^a string is longer than 2\*\*32 - 1 bytes$"
    ):
        dumps(mbt_file(strings=[[_claiming(2**32)]]))


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
    data = bytearray(dumps(mbt_file()))
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
    assert loads(dumps(mbt_file(architecture=name))).architecture == name


def test_read_limit_message_and_boundary(tmp_path):
    path = tmp_path / "x.psic"
    size = container.write(path, mbt_file())
    assert container.read(path, max_size=size) == mbt_file()
    with pytest.raises(
        PSICFormatError,
        match=f"^{re.escape(f'{path}: file is larger than the {size - 1}-byte')}",
    ):
        container.read(path, max_size=size - 1)


def test_read_from_a_pipe_at_the_limit_and_one_byte_over(tmp_path):
    fifo = tmp_path / "fifo.psic"
    os.mkfifo(fifo)
    data = dumps(mbt_file())
    writer = _serve(fifo, data)
    try:
        assert container.read(fifo, max_size=len(data)) == mbt_file()
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
    obj = mbt_file(strings=[[bytes(range(256)) * 9000]])
    writer = _serve(fifo, dumps(obj))
    try:
        assert container.read(fifo) == obj
    finally:
        writer.join()


def test_a_file_that_grew_after_its_size_was_taken(tmp_path, monkeypatch):
    # The size the file system reports is not trusted: a file that holds more
    # than max_size bytes is refused even when fstat said exactly max_size.
    path = tmp_path / "x.psic"
    size = container.write(path, mbt_file())
    real_fstat = os.fstat

    def fstat(fd):
        result = real_fstat(fd)
        return os.stat_result((*result[:6], size - 1, *result[7:]))

    monkeypatch.setattr(container.os, "fstat", fstat)
    message = f"{path}: file is larger than the {size - 1}-byte limit of this reader"
    with pytest.raises(PSICFormatError, match=f"^{re.escape(message)}$"):
        container.read(path, max_size=size - 1)
    assert container.read(path, max_size=size) == mbt_file()
