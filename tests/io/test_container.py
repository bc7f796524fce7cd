"""Tests of the ``.psic`` container: round trips, validation and parser fuzzing."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressai_psic.io import container
from compressai_psic.io.container import (
    CHECKSUM_SIZE,
    MAGIC,
    ModelMismatchError,
    PSICFile,
    PSICFormatError,
    check_compatible,
    dumps,
    loads,
)

from ..helpers import modules_loaded_by
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
