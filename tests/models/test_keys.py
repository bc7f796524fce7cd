"""The publisher's key: key files, per-image seeds and the key noise."""

from __future__ import annotations

import os
import pickle
import stat

import pytest
import torch

from compressai_psic.errors import KeyFileError
from compressai_psic.models.keys import (
    KEY_BYTES,
    KEY_FILE_HEADER,
    ShieldKey,
    image_seeds,
    key_noise,
    read_key_file,
    write_key_file,
)

SECRET = bytes(range(KEY_BYTES))


def test_a_key_never_shows_its_bytes():
    key = ShieldKey(SECRET)
    assert SECRET.hex() not in repr(key) and SECRET.hex() not in str(key)
    assert repr(key) == "ShieldKey(<secret>)"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(key)


def test_keys_are_32_bytes_or_64_hex_digits():
    assert ShieldKey.from_hex(SECRET.hex()) == ShieldKey(SECRET)
    assert ShieldKey.from_hex(SECRET.hex()).hex() == SECRET.hex()
    assert len(ShieldKey.generate().hex()) == 2 * KEY_BYTES
    assert ShieldKey.generate() != ShieldKey.generate()
    for bad in (SECRET[:-1], SECRET + b"x"):
        with pytest.raises(ValueError, match="32 bytes"):
            ShieldKey(bad)
    with pytest.raises(TypeError):
        ShieldKey(SECRET.hex())
    for text in ("ab" * 31, "zz" * 32):
        with pytest.raises(ValueError, match="64 hexadecimal"):
            ShieldKey.from_hex(text)
    assert hash(ShieldKey(SECRET)) == hash(ShieldKey(SECRET))


def test_key_files_are_written_0600_and_never_replaced_unasked(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path, ShieldKey(SECRET))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"{KEY_FILE_HEADER} {SECRET.hex()}\n"
    assert read_key_file(path) == ShieldKey(SECRET)
    with pytest.raises(KeyFileError, match="exists"):
        write_key_file(path, ShieldKey.generate())
    assert read_key_file(path) == ShieldKey(SECRET)
    os.chmod(path, 0o644)
    other = ShieldKey.generate()
    write_key_file(path, other, force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == other


@pytest.mark.parametrize(
    "content, message",
    [
        ("PSIC-KEY-2 " + SECRET.hex(), "not a psic key file"),
        (SECRET.hex(), "not a psic key file"),
        (f"{KEY_FILE_HEADER} {SECRET.hex()[:-2]}zz", "not 64 hexadecimal"),
        (f"{KEY_FILE_HEADER} {SECRET.hex()} extra", "not a psic key file"),
    ],
)
def test_malformed_key_files_are_refused_without_their_content(
    tmp_path, content, message
):
    path = tmp_path / "k.key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=message) as info:
        read_key_file(path)
    assert SECRET.hex()[:16] not in str(info.value)


def test_a_key_file_others_can_read_or_a_missing_one_is_refused(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path, ShieldKey(SECRET))
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_key_file(path)
    assert read_key_file(path, check_mode=False) == ShieldKey(SECRET)
    with pytest.raises(KeyFileError, match="no such key file"):
        read_key_file(tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match="not a file"):
        read_key_file(tmp_path)


def test_every_image_and_every_bitstream_gets_its_own_seed():
    key = ShieldKey(SECRET)
    strings = [[b"ab", b"ab", b"xy"], [b"c", b"c", b"c"]]
    seeds = image_seeds(key, strings, (4, 4))
    assert seeds == image_seeds(key, strings, (4, 4))  # deterministic
    assert seeds[0] == seeds[1] != seeds[2]  # same bytes, same seed
    assert all(0 <= s < 2**64 for s in seeds)
    # Each of key, byte, shape and the split between strings changes it.
    assert image_seeds(ShieldKey.generate(), strings, (4, 4))[0] != seeds[0]
    assert image_seeds(key, [[b"ac"], [b"c"]], (4, 4))[0] != seeds[0]
    assert image_seeds(key, [[b"ab"], [b"c"]], (4, 5))[0] != seeds[0]
    assert (
        image_seeds(key, [[b"a"], [b"bc"]], (4, 4))[0]
        != (image_seeds(key, [[b"ab"], [b"c"]], (4, 4))[0])
    )
    with pytest.raises(TypeError, match="ShieldKey"):
        image_seeds(SECRET, strings, (4, 4))


def test_key_noise_is_the_same_numbers_for_the_same_seed():
    like = torch.zeros(1, dtype=torch.float64)
    noise = key_noise([1, 2, 1], 3, (2, 5), like)
    assert noise.shape == (3, 3, 2, 5) and noise.dtype == torch.float64
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    expected = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noise[1], expected.double())
    assert key_noise([], 3, (2, 5), like).shape == (0, 3, 2, 5)


def test_a_key_is_written_in_either_case_and_refused_by_one_message():
    assert ShieldKey.from_hex(SECRET.hex().upper()) == ShieldKey(SECRET)
    assert ShieldKey.from_hex(f"  {SECRET.hex()}\n") == ShieldKey(SECRET)
    # Whatever is wrong with the digits, one message, without any of them.
    for text in ("XX" * 32, "0x" + "ab" * 31, "ab" * 31 + " a"):
        with pytest.raises(ValueError, match="^A key is 64 hexadecimal digits$"):
            ShieldKey.from_hex(text)
    with pytest.raises(TypeError, match="^A key is 32 bytes, got str$"):
        ShieldKey(SECRET.hex())


def test_equal_keys_hash_alike_and_others_apart():
    other = ShieldKey(bytes(KEY_BYTES))
    assert hash(ShieldKey(SECRET)) == hash(ShieldKey(bytearray(SECRET)))
    assert hash(ShieldKey(SECRET)) != hash(other)
    assert len({ShieldKey(SECRET), ShieldKey(SECRET), other}) == 2


def test_pickling_a_key_says_how_to_pass_it():
    with pytest.raises(
        TypeError, match=r"^A ShieldKey is not pickled; pass key\.hex\(\) explicitly$"
    ):
        pickle.dumps(ShieldKey(SECRET))


def test_the_seed_of_a_published_bitstream_never_changes():
    # Every protected image already published decodes with these seeds: the
    # message (domain, framed shape, framed strings) and the seed's bytes are
    # part of the format. Worked out by hand from the documented message:
    import hashlib
    import hmac

    strings = [[b"ab", b""], [b"c", b"xyz"]]

    def framed(data: bytes) -> bytes:
        return len(data).to_bytes(8, "big") + data

    expected = []
    for i in range(2):
        message = b"psic-key-noise-v1" + framed(b"4,6")
        message += b"".join(framed(s[i]) for s in strings)
        digest = hmac.new(SECRET, message, hashlib.sha256).digest()
        expected.append(int.from_bytes(digest[:8], "big"))
    seeds = image_seeds(ShieldKey(SECRET), strings, torch.Size([4, 6]))
    assert seeds == expected
    assert seeds == [566798629528245994, 12002845955866154815]


def test_a_key_that_is_not_a_key_is_named_by_its_type():
    with pytest.raises(TypeError, match="got bytes$") as info:
        image_seeds(SECRET, [[b"ab"]], (4, 4))
    assert SECRET.hex()[:16] not in str(info.value)


def test_key_noise_goes_to_the_device_and_dtype_of_the_latent():
    like = torch.empty(2, dtype=torch.float16, device="meta")
    noise = key_noise([1, 2], 3, (2, 5), like)
    assert noise.device.type == "meta" and noise.dtype == torch.float16
    assert noise.shape == (2, 3, 2, 5)


def test_a_key_file_is_never_readable_by_others_even_for_an_instant(
    tmp_path, monkeypatch
):
    # The mode is set when the file is made, not afterwards: between os.open and
    # os.fchmod another user could already open it.
    from compressai_psic.models import keys

    modes = []
    fchmod = os.fchmod

    def watch(fd, mode):
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        fchmod(fd, mode)

    monkeypatch.setattr(keys.os, "fchmod", watch)
    old = os.umask(0)
    try:
        write_key_file(tmp_path / "k.key", ShieldKey(SECRET))
    finally:
        os.umask(old)
    assert modes == [0o600]
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",  # --key pointed at an image
        f"{KEY_FILE_HEADER} {SECRET.hex()[:-1]}\xe9".encode("latin-1"),
        # A key file is ASCII: a non-breaking space does not separate its words.
        f"{KEY_FILE_HEADER}\u00a0{SECRET.hex()}\n".encode(),  # UTF-8
    ],
)
def test_a_key_file_that_is_not_ascii_is_refused_as_malformed(tmp_path, content):
    path = tmp_path / "k.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="is not a psic key file") as info:
        read_key_file(path)
    assert SECRET.hex()[:16] not in str(info.value)


def test_a_malformed_key_file_is_told_what_a_key_file_holds(tmp_path):
    path = tmp_path / "k.key"
    path.write_text("PSIC-KEY-2 " + SECRET.hex())
    os.chmod(path, 0o600)
    with pytest.raises(
        KeyFileError,
        match="want 'PSIC-KEY-1' and 64 hexadecimal digits; psic keygen writes one",
    ):
        read_key_file(path)


def test_derived_keys_are_the_sha256_of_their_text():
    import hashlib

    from compressai_psic.demo.pipeline import demo_key
    from compressai_psic.evaluation.protection import attacker_keys, evaluation_key

    text = "psic-evaluation-publisher:2025"
    assert ShieldKey.derived(text) == ShieldKey(hashlib.sha256(text.encode()).digest())
    assert evaluation_key(2025) == ShieldKey.derived(text) != evaluation_key(2026)
    assert demo_key(0) == ShieldKey.derived("psic-demo-publisher:0")
    fresh = attacker_keys(777)
    first, second = fresh(), fresh()
    assert first == ShieldKey.derived("psic-attacker-key:777:1") != second
    assert evaluation_key(2025) not in (first, second)
