r"""A pure-Python model of CompressAI's rANS decoder that counts its reads.

It follows ``RansDecoder::decode_with_indexes`` of CompressAI 1.2.6–1.2.8 (16-bit
precision, 4-bit bypass mode, ryg_rans' 64-bit state, 32-bit words read in the
machine's byte order) step by step, but raises :class:`OutOfBounds` instead of
reading past the buffer, and returns how many bytes it read. The tests check
that it decodes exactly what the native decoder decodes, then use it to check
the bound of :func:`compressai_psic.models.guard.padding_bytes`.
"""

from __future__ import annotations

import random
import sys
from typing import List, Sequence, Tuple

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from hypothesis import strategies as st

__all__ = [
    "OutOfBounds",
    "entropy_model_tables",
    "random_case",
    "reference_decode",
    "streams",
    "valid_start",
]

_LOW = 1 << 31
_MASK64 = (1 << 64) - 1


class OutOfBounds(Exception):
    """The decoder would read past the end of its buffer."""


def _int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def reference_decode(
    data: bytes,
    indexes: Sequence[int],
    cdfs: Sequence[Sequence[int]],
    cdf_lengths: Sequence[int],
    offsets: Sequence[int],
) -> Tuple[List[int], int]:
    """Decoded symbols and bytes read, as the native decoder would."""
    words = [
        int.from_bytes(data[i : i + 4], sys.byteorder)
        for i in range(0, len(data) - len(data) % 4, 4)
    ]
    position = 0

    def read() -> int:
        nonlocal position
        if position >= len(words):
            raise OutOfBounds(f"read of word {position}, the buffer has {len(words)}")
        position += 1
        return words[position - 1]

    state = read()
    state |= read() << 32

    def get_bits() -> int:
        nonlocal state
        value = state & 15
        state >>= 4
        if state < _LOW:
            state = ((state << 32) | read()) & _MASK64
        return value

    out = []
    for index in indexes:
        cdf = cdfs[index]
        max_value = cdf_lengths[index] - 2
        cum_freq = state & 0xFFFF
        symbol = 0
        while cdf[symbol + 1] <= cum_freq:
            symbol += 1
        start, freq = cdf[symbol], cdf[symbol + 1] - cdf[symbol]
        state = (freq * (state >> 16) + (state & 0xFFFF) - start) & _MASK64
        if state < _LOW:
            state = ((state << 32) | read()) & _MASK64
        value = symbol
        if value == max_value:
            nibble = get_bits()
            count = nibble
            while nibble == 15:
                nibble = get_bits()
                count = _int32(count + nibble)
            raw = 0
            for j in range(max(count, 0)):
                # x86 masks 32-bit shift counts (C++ leaves them undefined).
                raw = (raw | (get_bits() << ((4 * j) % 32))) & 0xFFFFFFFF
            raw = _int32(raw)
            value = raw >> 1
            value = -value - 1 if raw & 1 else value + max_value
        out.append(_int32(value + offsets[index]))
    return out, 4 * position


def valid_start(data: bytes) -> bytes:
    """``data`` with the top bit of its first word set: a start state in
    ``[2**31, 2**63)``, the only kind the guard lets through."""
    return data[:3] + bytes([data[3] | 0x80]) + data[4:7] + bytes([data[7] & 0x7F])


#: Byte strings for the decoders: repeated patterns, random bytes, all-ones words
#: (the bypass mode's longest runs) and a start state followed by them.
streams = st.one_of(
    st.binary(min_size=2, max_size=40).map(lambda b: b * 4),
    st.binary(min_size=8, max_size=160),
    st.integers(2, 40).map(lambda n: b"\xff" * (4 * n)),
    st.tuples(st.binary(min_size=8, max_size=8), st.integers(0, 20)).map(
        lambda t: t[0] + b"\xff\xff\xff\xff" * t[1]
    ),
)


def entropy_model_tables(ragged: bool = False) -> List[Tuple[list, list, list]]:
    """``(cdfs, lengths, offsets)`` of a seeded ``EntropyBottleneck(6)`` and of a
    ``GaussianConditional`` of 32 scales, as lists; ``ragged`` cuts each CDF row
    to its length (the form CompressAI's own tests pass)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bottleneck = EntropyBottleneck(6)
        bottleneck.update(force=True)
    conditional = GaussianConditional(None)
    conditional.update_scale_table(torch.exp(torch.linspace(-2.3, 4.0, 32)))
    conditional.update()
    tables = []
    for module in (bottleneck, conditional):
        lengths = module._cdf_length.tolist()
        cdfs = module._quantized_cdf.tolist()
        if ragged:
            cdfs = [row[:n] for row, n in zip(cdfs, lengths)]
        tables.append((cdfs, lengths, module._offset.tolist()))
    return tables


def random_case(
    data: bytes, table_count: int, symbols: int, seed: int
) -> Tuple[bytes, List[int]]:
    """``data`` cut to whole words with a valid start, and ``symbols`` table
    indexes drawn below ``table_count``: a decode of bytes no encoder wrote."""
    rng = random.Random(seed)
    indexes = [rng.randrange(table_count) for _ in range(symbols)]
    return valid_start(data[: len(data) - len(data) % 4]), indexes
