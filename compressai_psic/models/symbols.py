r"""A digest of the latent symbols: a decoder that knows when it is wrong.

CompressAI's entropy coders code integer *symbols* with tables that the decoder
selects from its own entropy parameters (the hyper-synthesis' scales and means,
the context model's outputs). A decoder whose parameters differ from the
encoder's in the last bits (another device, thread count or math library) can
select another table, and rANS then decodes different symbols, silently: the
image comes out as blocks of garbage (CompressAI's issues #279, #309, #320).

The encoder records the symbols it hands to the entropy coder and stores their
CRC-32 (:func:`zlib.crc32`, 4 bytes) in the ``.psic`` header; the decoder
records the symbols it gets back and compares (:func:`check_symbols_digest`),
so a desynchronised decode raises :class:`~compressai_psic.errors.DesyncError`
instead of returning a wrong image.

What is digested: every symbol in the order the entropy coder codes it, as
little-endian 32-bit integers, i.e. the hyper-latent ``z`` (a ``B×C×h×w``
array, C order) then ``y`` (the same for the hyperprior models; position by
position, the channels of each, for the autoregressive ``mbt2018`` and
``cheng2020-*``), ``y`` alone for ``bmshj2018-factorized``; the whole batch of a
call (files hold one image).

How it is recorded: :func:`install_symbol_taps` gives a model's
:class:`~compressai.entropy_models.EntropyBottleneck` and
:class:`~compressai.entropy_models.GaussianConditional` a subclass (same state,
same behaviour) whose ``quantize(..., "symbols")`` (the encoder's symbols, for
every zoo architecture) and ``dequantize`` (the decoder's) report to the
:class:`SymbolRecorder` of the current call, if any (:func:`record_symbols`, a
:class:`contextvars.ContextVar`: private to the thread and task).

The same subclasses decode with :class:`BoundedDecompress`, whose rANS decoder
(:mod:`~compressai_psic.models.rans`) never reads past a string and says
whether each string decoded consistently (read to its end, ending in rANS's
start state): the recorder keeps the first string that
did not (:attr:`SymbolRecorder.inconsistent`), and :func:`check_streams` turns
it into a :class:`~compressai_psic.errors.DesyncError`, so that a file without
a digest, too, never decodes silently wrong. Outside :func:`record_symbols`
such a string raises at once.
"""

from __future__ import annotations

import contextlib
import zlib
from contextvars import ContextVar
from typing import Iterator, List, Optional

import torch
from compressai.entropy_models import (
    EntropyBottleneck,
    EntropyModel,
    GaussianConditional,
)
from torch import Tensor, nn

from ..errors import DesyncError
from . import rans
from .rans import StreamCheck

__all__ = [
    "MODES",
    "BoundedDecompress",
    "SymbolRecorder",
    "SymbolTapEntropyBottleneck",
    "SymbolTapGaussianConditional",
    "check_streams",
    "check_symbols_digest",
    "report_stream",
    "install_symbol_taps",
    "remove_symbol_taps",
    "record_symbols",
]

#: What a recorder listens to: the encoder's symbols or the decoder's.
MODES = ("encode", "decode")


class SymbolRecorder:
    """CRC-32 of the symbols coded (``mode="encode"``) or decoded
    (``"decode"``) during one call, in the entropy coder's order."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f'Invalid mode "{mode}": use one of {list(MODES)}')
        self.mode = mode
        self.crc = 0
        self.count = 0
        #: The first string of the call that did not decode consistently.
        self.inconsistent: Optional[StreamCheck] = None

    def add(self, symbols: Tensor) -> None:
        """Adds the symbols of one entropy-coder call (integers of any dtype)."""
        # astype gives little-endian int32 whatever the dtype (the AR loop of
        # CompressAI hands dequantize float32 symbols) and byte order.
        array = symbols.detach().cpu().contiguous().numpy()
        self.crc = zlib.crc32(array.astype("<i4").tobytes(), self.crc)
        self.count += array.size

    @property
    def digest(self) -> Optional[int]:
        """The CRC-32, or ``None`` when nothing was recorded (a model whose
        entropy models have no taps)."""
        return self.crc if self.count else None

    def add_stream(self, check: StreamCheck) -> None:
        """Keeps the first inconsistent string's check (decode mode only)."""
        if self.inconsistent is None and not check.consistent:
            self.inconsistent = check


_RECORDER: ContextVar[Optional[SymbolRecorder]] = ContextVar(
    "compressai_psic_symbol_recorder", default=None
)


@contextlib.contextmanager
def record_symbols(mode: str) -> Iterator[SymbolRecorder]:
    """Records the symbols that tapped entropy models code (``"encode"``) or
    decode (``"decode"``) inside the ``with`` block."""
    recorder = SymbolRecorder(mode)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def _report(mode: str, symbols: Tensor) -> None:
    recorder = _RECORDER.get()
    if recorder is not None and recorder.mode == mode:
        recorder.add(symbols)


def report_stream(check: StreamCheck) -> None:
    """Hands a decoded string's check to the current decode's recorder, or,
    outside :func:`record_symbols`, raises
    :class:`~compressai_psic.errors.DesyncError` at once when it is
    inconsistent."""
    recorder = _RECORDER.get()
    if recorder is not None and recorder.mode == "decode":
        recorder.add_stream(check)
    elif not check.consistent:
        raise DesyncError(_inconsistent_message(check))


def _inconsistent_message(check: StreamCheck) -> str:
    return (
        f"a string of the bitstream did not decode consistently ({check.describe()}):"
        " the file is corrupted, or this machine computed other entropy parameters "
        "than the encoder did, and the image would be garbage"
    )


class BoundedDecompress(EntropyModel):
    """:meth:`EntropyModel.decompress
    <compressai.entropy_models.EntropyModel.decompress>` with the bounded rANS
    decoder (:mod:`~compressai_psic.models.rans`) for the ``"ans"`` coder, when
    the extension is built (else CompressAI's).

    It reads the tables from the model's buffers as arrays, so it skips the
    list conversions CompressAI's pays for on every call, and it reports each
    string's :class:`~compressai_psic.models.rans.StreamCheck`
    (:func:`report_stream`). The tapped classes put it between CompressAI's
    class and ``EntropyModel``, so that ``EntropyBottleneck.decompress`` reaches
    it through ``super()``.
    """

    @property
    def decodes_in_bounds(self) -> bool:
        """Whether :meth:`decompress` uses the bounded decoder."""
        return self.entropy_coder.name == "ans" and rans.available()

    def decompress(
        self,
        strings: List[bytes],
        indexes: Tensor,
        dtype: torch.dtype = torch.float,
        means: Optional[Tensor] = None,
    ) -> Tensor:
        if not self.decodes_in_bounds:
            return super().decompress(strings, indexes, dtype, means)
        if not isinstance(strings, (tuple, list)) or len(strings) != len(indexes):
            raise ValueError("need one string per row of indexes")
        if indexes.dim() < 2:
            raise ValueError("indexes need at least 2 dimensions (batch, channels)")
        if means is not None and (
            means.shape[:2] != indexes.shape[:2]
            or any(m not in (1, i) for m, i in zip(means.shape, indexes.shape))
        ):
            raise ValueError(
                f"means of shape {tuple(means.shape)} do not fit indexes of shape "
                f"{tuple(indexes.shape)}"
            )
        self._check_cdf_size()
        self._check_cdf_length()
        self._check_offsets_size()
        cdf = self._quantized_cdf
        # rans makes them int32 arrays (no copy when they are already).
        tables = cdf.detach().cpu().numpy()
        lengths = self._cdf_length.detach().cpu().numpy()
        offsets = self._offset.detach().cpu().numpy()
        rows = indexes.detach().cpu().reshape(len(strings), -1)
        outputs = torch.empty(rows.shape, dtype=torch.int32)
        for row, string in enumerate(strings):
            values, check = rans.decode_with_indexes(
                string, rows[row].numpy(), tables, lengths, offsets
            )
            report_stream(check)
            outputs[row] = torch.from_numpy(values)
        outputs = outputs.reshape(indexes.shape).to(cdf.device)
        return self.dequantize(outputs, means, dtype)


class _SymbolTap:
    """Reports the symbols of ``quantize(..., "symbols")`` and ``dequantize``."""

    def quantize(
        self, inputs: Tensor, mode: str, means: Optional[Tensor] = None
    ) -> Tensor:
        outputs = super().quantize(inputs, mode, means)  # type: ignore[misc]
        if mode == "symbols":
            _report("encode", outputs)
        return outputs

    def dequantize(
        self,
        inputs: Tensor,
        means: Optional[Tensor] = None,
        dtype: torch.dtype = torch.float,
    ) -> Tensor:
        _report("decode", inputs)
        return super().dequantize(inputs, means, dtype)  # type: ignore[misc]


class SymbolTapEntropyBottleneck(_SymbolTap, EntropyBottleneck, BoundedDecompress):
    """:class:`~compressai.entropy_models.EntropyBottleneck` that reports its
    symbols to the current :class:`SymbolRecorder` and decodes in bounds."""


class SymbolTapGaussianConditional(_SymbolTap, GaussianConditional, BoundedDecompress):
    """:class:`~compressai.entropy_models.GaussianConditional` that reports its
    symbols to the current :class:`SymbolRecorder` and decodes in bounds."""


_TAPS = {
    EntropyBottleneck: SymbolTapEntropyBottleneck,
    GaussianConditional: SymbolTapGaussianConditional,
}


def install_symbol_taps(model: nn.Module) -> int:
    """Gives every ``EntropyBottleneck`` and ``GaussianConditional`` of
    ``model`` (exactly those classes) its tapped subclass; returns how many.

    The subclasses add no state: state dicts, CDF buffers, pickling and
    ``isinstance`` checks are unchanged, and nothing is reported outside
    :func:`record_symbols`.
    """
    count = 0
    for module in model.modules():
        tapped = _TAPS.get(type(module))
        if tapped is not None:
            module.__class__ = tapped
            count += 1
        elif isinstance(module, _SymbolTap):
            count += 1
    return count


def remove_symbol_taps(model: nn.Module) -> None:
    """Gives the tapped entropy models of ``model`` back their CompressAI
    class (for :func:`~compressai_psic.models.unshield`)."""
    untapped = {tap: base for base, tap in _TAPS.items()}
    for module in model.modules():
        base = untapped.get(type(module))
        if base is not None:
            module.__class__ = base


def check_streams(recorder: SymbolRecorder) -> None:
    """Raises :class:`~compressai_psic.errors.DesyncError` when a string of
    the decode that ``recorder`` watched did not decode consistently."""
    if recorder.inconsistent is not None:
        raise DesyncError(_inconsistent_message(recorder.inconsistent))


def check_symbols_digest(
    expected: Optional[int], found: Optional[int], portable: bool = False
) -> None:
    """Raises :class:`~compressai_psic.errors.DesyncError` when a decode's
    symbols (``found``) are not the encoder's (``expected``); ``None`` on
    either side checks nothing."""
    if expected is None or found is None or expected == found:
        return
    what = (
        f"the decoded latents are not the encoder's (symbol CRC-32 {found:08x}, "
        f"the file says {expected:08x})"
    )
    if portable:
        raise DesyncError(
            f"{what}: the file is portable, so its bitstream or the model differ "
            "from the encoder's; check the file and that the weights are the same"
        )
    raise DesyncError(
        f"{what}: this machine computed other entropy parameters than the encoder "
        "did, and the image would be garbage; decode on the kind of device (and "
        "software versions) that encoded it, or encode it again with --portable"
    )
