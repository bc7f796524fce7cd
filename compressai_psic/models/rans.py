r"""A rANS decoder for CompressAI's bitstreams that checks the end of its input.

CompressAI's ``RansDecoder`` reads its string as 32-bit words without looking
for the end (:mod:`~compressai_psic.models.guard` says why that matters and
how far it can read). This module's decoder, a small C extension built with the
package (``compressai_psic/csrc/bounded_rans.c``), decodes the same format
symbol for symbol, but a read past the end returns a zero word without touching
memory. Its result is exactly CompressAI's on the zero-padded string, so the
guard no longer appends padding (up to 76 bytes per symbol) for the strings it
decodes, and it costs O(bytes present).

It also says whether the string was *consistent* (:class:`StreamCheck`): the
encoder's string is read to its last word, never past it, and leaves the state
rANS started from. A corrupted string, or one decoded with other tables than
the encoder's (another machine's entropy parameters), almost never is.

::

    EntropyModel.decompress (symbols.BoundedDecompress, the package's entropy
      │                      models: symbols.install_symbol_taps)
      ├── "ans" and the extension built: decode_with_indexes(string, ...)
      │       └── values + StreamCheck ──> symbols.report_stream
      └── otherwise: CompressAI's own decoder
    mbt2018, cheng2020-* y: BoundedRansDecoder, position by position
      (autoregressive.BoundedAutoregressiveDecoding)

Where the extension was not built (no C compiler at install), :func:`available`
is false and decoding falls back to CompressAI's decoder on padded strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Tuple

import numpy as np

try:
    from . import _bounded_rans as _native
except ImportError:  # built without a C compiler: CompressAI's decoder + padding
    _native = None

__all__ = [
    "INITIAL_STATE",
    "BoundedRansDecoder",
    "StreamCheck",
    "available",
    "decode_with_indexes",
]

#: The state CompressAI's rANS encoder starts from, and a complete decode ends in.
INITIAL_STATE = 1 << 31


def available() -> bool:
    """Whether the bounded decoder was built (the package's C extension)."""
    return _native is not None


@dataclass(frozen=True)
class StreamCheck:
    """What one decode of a string found.

    Attributes:
        words_past_end: 32-bit words asked for after the string ran out (read
            as zeros).
        unread_bytes: bytes after the last word read that are not zero (zero
            words at the end are padding and count as read).
        final_state: the rANS state after the last symbol.
    """

    words_past_end: int
    unread_bytes: int
    final_state: int

    @property
    def consistent(self) -> bool:
        """Read exactly to its end, ending in :data:`INITIAL_STATE`: what
        every string of CompressAI's encoder does."""
        return (
            self.words_past_end == 0
            and self.unread_bytes == 0
            and self.final_state == INITIAL_STATE
        )

    def describe(self) -> str:
        """What is wrong, in words (empty when consistent)."""
        problems = []
        if self.words_past_end:
            problems.append(f"{self.words_past_end} words past its end were needed")
        if self.unread_bytes:
            problems.append(f"{self.unread_bytes} bytes after its last symbol")
        if self.final_state != INITIAL_STATE:
            problems.append("the decoder did not end in the encoder's start state")
        return "; ".join(problems)


def _int32(values: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.int32))


def decode_with_indexes(
    string: bytes,
    indexes: Sequence[int],
    cdfs: Sequence[Sequence[int]],
    cdf_lengths: Sequence[int],
    offsets: Sequence[int],
) -> Tuple[np.ndarray, StreamCheck]:
    """Decodes ``len(indexes)`` symbols of ``string``, with the arguments of
    CompressAI's ``RansDecoder.decode_with_indexes``.

    ``cdfs`` may be ragged (a list of lists, as CompressAI's tests pass them) or
    rows of one length (``EntropyModel._quantized_cdf.tolist()``, or an array).

    Returns:
        ``(values, check)``: the symbols as an int32 array and the
        :class:`StreamCheck` of the string.

    Raises:
        RuntimeError: when the extension was not built (:func:`available`).
        ValueError: for a string that is not whole 32-bit words, a table index
            out of range, or tables that are not 16-bit CDFs.
    """
    decoder = BoundedRansDecoder()
    decoder.set_stream(string)
    values = decoder.decode_stream(indexes, cdfs, cdf_lengths, offsets)
    return values, decoder.check()


def _require_native() -> None:
    if _native is None:
        raise RuntimeError(
            "the bounded rANS decoder was not built (no C compiler when "
            "compressai-psic was installed); reinstall with one"
        )


class BoundedRansDecoder:
    """CompressAI's ``RansDecoder`` streaming interface (``set_stream``, then
    ``decode_stream`` calls that go on where the last one stopped), in bounds.

    The autoregressive models decode ``y`` this way, one position at a time
    (:class:`~compressai_psic.models.autoregressive.BoundedAutoregressiveDecoding`).
    :meth:`check` gives the :class:`StreamCheck` of the string once its last
    symbol is decoded.

    Raises:
        RuntimeError: at construction, when the extension was not built.
    """

    def __init__(self) -> None:
        _require_native()
        self._string = b""
        self._position = -1  # before the start state
        self._state = 0
        self._past_end = 0

    def set_stream(self, string: bytes) -> None:
        """Starts decoding ``string`` (whole 32-bit words)."""
        self._string = bytes(string)
        if len(self._string) % 4:
            raise ValueError("the string is not whole 32-bit words")
        self._position, self._state, self._past_end = -1, 0, 0

    def decode_stream(
        self,
        indexes: Sequence[int],
        cdfs: Sequence[Sequence[int]],
        cdf_lengths: Sequence[int],
        offsets: Sequence[int],
    ) -> np.ndarray:
        """The next ``len(indexes)`` symbols, as an int32 array (the arguments
        of :func:`decode_with_indexes`)."""
        # Any shape: the extension reads each argument as a flat int32 buffer.
        index_array = _int32(indexes)
        table = _cdf_table(cdfs)
        values = np.empty(index_array.size, dtype=np.int32)
        position, past_end, state = _native.decode(
            self._string,
            index_array,
            table,
            table.shape[1],
            _int32(cdf_lengths),
            _int32(offsets),
            values,
            self._position,
            self._state,
        )
        self._position, self._state = position, state
        self._past_end += past_end
        return values

    def check(self) -> StreamCheck:
        """How the string decoded so far compares with a whole, consistent one."""
        data = self._string
        read = max(self._position, 0)
        unread = len(data) - read
        if unread and not np.frombuffer(data, np.uint8, offset=read).any():
            unread = 0  # zero words at the end: padding, which decodes as such
        return StreamCheck(int(self._past_end), int(unread), int(self._state))


def _cdf_table(cdfs: Any) -> np.ndarray:
    """``cdfs`` as a C-contiguous int32 matrix (ragged rows padded with zeros
    the decoder never reads: it reads each row up to its length)."""
    if isinstance(cdfs, np.ndarray):
        return _int32(cdfs)
    rows = [len(row) for row in cdfs]
    if not rows:
        raise ValueError("no tables: need at least one CDF")
    if min(rows) == max(rows):
        return _int32(cdfs)
    table = np.zeros((len(rows), max(rows)), dtype=np.int32)
    for row, values in enumerate(cdfs):
        table[row, : len(values)] = values
    return table
