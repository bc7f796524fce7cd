"""Tests of the file helpers: atomic writes with the umask's permissions, sha256."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from compressai_psic.io.files import file_sha256, write_bytes


def test_file_sha256(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc" * 1000)
    assert file_sha256(path, chunk_size=7) == (
        hashlib.sha256(b"abc" * 1000).hexdigest()
    )


@pytest.mark.parametrize(
    "umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]
)
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    # Issue 12: outputs were 0600 whatever the umask (mkstemp's mode).
    old = os.umask(umask)
    try:
        write_bytes(tmp_path / "x.psic", b"PSIC")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.psic").stat().st_mode) == mode


def test_unwritable_target_is_named_not_the_temporary_file(tmp_path):
    target = tmp_path / "missing-folder" / "x.psic"
    with pytest.raises(OSError) as exc:
        write_bytes(target, b"PSIC")
    assert exc.value.filename == str(target)
    assert ".x.psic." not in str(exc.value)
