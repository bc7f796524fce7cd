"""Small `.psic` files for the container's tests."""

from __future__ import annotations

import hashlib

from compressai_psic.io.container import CHECKSUM_SIZE, PSICFile


def make_file(**overrides) -> PSICFile:
    fields = dict(
        architecture="bmshj2018-hyperprior",
        quality=3,
        metric="mse",
        checkpoint_sha256=None,
        height=40,
        width=57,
        shape=(1, 1),
        strings=[[b"\x01\x02\x03"], [b"zz"]],
        seed=None,
    )
    fields.update(overrides)
    return PSICFile(**fields)


def with_checksum(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()[:CHECKSUM_SIZE]
