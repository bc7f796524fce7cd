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

The same subclasses decode through
:class:`~compressai_psic.models.rans.BoundedEntropyCoder`, which never reads
past a string and says whether each string decoded consistently (read to its
end, ending in rANS's start state): the recorder keeps the first string that
did not (:attr:`SymbolRecorder.inconsistent`), and :func:`check_streams` turns
it into a :class:`~compressai_psic.errors.DesyncError`, so that a file without
a digest, too, never decodes silently wrong. Outside :func:`record_symbols`
such a string raises at once.
"""

from __future__ import annotations

import contextlib
import zlib
from contextvars import ContextVar
from typing import Iterator, Optional

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from ..errors import DesyncError
from .rans import BoundedEntropyCoder, StreamCheck, unwrap

__all__ = [
    "MODES",
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
        array = symbols.detach().to("cpu", torch.int32).contiguous().numpy()
        self.crc = zlib.crc32(array.astype("<i4", copy=False).tobytes(), self.crc)
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


class _SymbolTap:
    """Reports the symbols of ``quantize(..., "symbols")`` and ``dequantize``,
    and decodes with the bounded rANS decoder."""

    @property
    def entropy_coder(self) -> BoundedEntropyCoder:
        # A property on the class comes before the instance attribute that
        # CompressAI's EntropyModel sets: the coder it made is wrapped at use.
        return BoundedEntropyCoder(self.__dict__["entropy_coder"], report_stream)

    @entropy_coder.setter
    def entropy_coder(self, coder: object) -> None:
        self.__dict__["entropy_coder"] = unwrap(coder)

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


class SymbolTapEntropyBottleneck(_SymbolTap, EntropyBottleneck):
    """:class:`~compressai.entropy_models.EntropyBottleneck` that reports its
    symbols to the current :class:`SymbolRecorder`."""


class SymbolTapGaussianConditional(_SymbolTap, GaussianConditional):
    """:class:`~compressai.entropy_models.GaussianConditional` that reports its
    symbols to the current :class:`SymbolRecorder`."""


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
