r"""Validation that makes decoding untrusted bitstreams safe, bounded and finite.

The ``.psic`` checksum only stops accidental corruption: anyone can recompute it.
A codec that decodes files from strangers must therefore check, before any
entropy decoding, that the strings and the latent ``shape`` fit the model, and
must never hand CompressAI's native rANS decoder a buffer it can read past.

Every shielded model's ``decompress`` and ``decompress_multi`` run
:func:`guard_decode_inputs` first and :func:`check_finite` last, and its
``compress`` runs :func:`check_compress_input`; for another model:

.. code-block:: python

    from compressai_psic.models import guard

    strings = guard.guard_decode_inputs(net, strings, shape)
    x_hat = net.decompress(strings, shape)["x_hat"]
    guard.check_finite(x_hat)

:func:`validate_decode_inputs` checks, and raises
:class:`~compressai_psic.errors.BitstreamError` or
:class:`~compressai_psic.errors.PixelLimitError` (both
:class:`~compressai_psic.errors.PSICFormatError`, a :class:`ValueError`; the
container re-exports all three):

- one list of strings per entropy-coded latent of the model, every list with the
  same batch size, every string ``bytes``;
- a ``shape`` of the model's length, each dimension a positive integer, and, when
  the image size is given, exactly the shape of that (padded) image;
- at most :data:`MAX_DECODE_PIXELS` decoded pixels (the padded size times the
  batch size; like Pillow's ``Image.MAX_IMAGE_PIXELS``, set it to ``None`` to
  turn the limit off);
- every string as CompressAI's encoder writes it: whole 32-bit words, at least the
  8-byte final state, at most :func:`max_string_length` bytes for its number of
  symbols, and a first state inside rANS's normalisation interval.

:func:`pad_strings` then appends zeros, where the decoder needs them, so that
no read of it can leave the buffer, whatever the bytes (the bound is derived
below and checked against a model of the decoder in the tests);
:func:`guard_decode_inputs` does both. The package's shielded models need none
for the strings their entropy models decode: those go through the bounded
decoder of :mod:`~compressai_psic.models.rans`, which checks the end of its
input (:func:`read_in_bounds` says which string lists; the autoregressive
models' ``y`` too, :mod:`~compressai_psic.models.autoregressive`). Padding
remains for models that are not shielded and where the C extension was not
built.

Trailing zero words of a string count as padding: they decode exactly as the
zeros :func:`pad_strings` appends, so padded strings validate and pad again as
themselves.

Why CompressAI's decoder reads past its input
---------------------------------------------
``RansDecoder.decode_with_indexes`` and ``decode_stream`` (CompressAI
1.2.6–1.2.8, ``cpp_exts/rans/rans_interface.cpp`` with ryg_rans' ``rans64.h``)
read the string as 32-bit words with no end-of-buffer check: 2 words to start,
then one word whenever the 64-bit state ``x`` drops below ``L = 2**31`` after
decoding a symbol (``Rans64DecAdvance``) or after taking 4 raw bits in the
bypass mode of out-of-range values (``Rans64DecGetBits``). A corrupted string
drives the state anywhere, so the decoder reads until it has decoded all its
symbols, far past a short string. Strings under 16 bytes live inside the C++
``std::string`` object on the stack (small-string optimisation): reading past
them walks off the top of the stack, hence the segmentation faults of 0–12 byte
strings. Longer strings read into the heap, which only crashes when the read
reaches an unmapped page; nothing in the decoder prevents that.

The bound
---------
Let the first two words give ``x`` in ``[2**31, 2**63)``; CompressAI's encoder
always flushes a state in that interval, and :func:`validate_decode_inputs`
refuses any other. Then ``x`` stays in it: a symbol step leaves
``x >= 2**15`` before renormalisation and ``x >= 2**47`` after it (one read at
most); a 4-bit step leaves ``x >= 2**27`` and ``x >= 2**59`` after a read, so
reads in a run of 4-bit steps are at least 8 steps apart. A symbol in bypass mode
reads nibbles while they are 15 (``W`` of them) and then as many raw nibbles as
their sum: at most ``16 W + 15`` steps and ``2 W + 2`` reads. The nibbles of a
run come from the state (at most 8, since ``x < 2**63``) and then from the words
read, 8 per word, so ``W <= 15 + 8 r``, where ``r`` is the longest run of
all-ones words (``0xffffffff``) in the string.

Append zeros. After the string is used up every word read is 0, so a later
bypass run ends at the first nibble of its first read word: ``W <= 8``, at most
``1 + 18 = 19`` reads per symbol. The symbol during which the string runs out
reads at most ``3 + 2 (15 + 8 r)`` words. With ``S`` symbols, at most
``19 S + 33 + 16 r`` words are read past the string:
:func:`padding_bytes` is ``76 S + 132 + 64 r``. The decoder's time is bounded
likewise (at most ``16 W + 16`` steps per symbol).

Valid strings are never long: each symbol makes the encoder write at most 10
words (one for the symbol, one for the bypass length, 8 for a 32-bit raw value)
plus the 2-word final state, so :func:`max_string_length` is ``8 + 40 S`` and
both the string and its padding are bounded by the declared size.

Why not less: no padding in O(bytes present) is safe
------------------------------------------------------
The padding grows with the symbols, not with the string, and no analysis can
change that for this decoder: a string of only its 8-byte start state makes it
read about 2 bytes per symbol past its end (after a zero word the low state
bits are zero, every symbol decodes as its table's first, of frequency 1, and
takes 16 bits), so any safe padding is at least ``~2 S`` bytes
(``tests/models/test_guard.py``). What a string can make the decoder read is
between that and the ``76 S`` proved here. Hence the bounded decoder
(:mod:`~compressai_psic.models.rans`): it reads a word past the end as zero
without touching memory, so it decodes exactly what CompressAI's decoder
decodes from the padded string, at the cost of the bytes present.
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from compressai.entropy_models import EntropyModel
from torch import Tensor, nn

from ..errors import BitstreamError, PixelLimitError
from ..options import MAX_DECODE_PIXELS
from .autoregressive import BoundedAutoregressiveDecoding
from .symbols import BoundedDecompress

__all__ = [
    "MAX_DECODE_PIXELS",
    "BitstreamError",
    "LatentLayout",
    "PixelLimitError",
    "check_compress_input",
    "check_finite",
    "expected_shape",
    "guard_decode_inputs",
    "latent_layout",
    "max_string_length",
    "pad_strings",
    "padding_bytes",
    "read_in_bounds",
    "validate_decode_inputs",
]


#: Bytes of the rANS state the encoder always flushes: the shortest valid string.
MIN_STRING_LENGTH = 8

_WORD = 4
_STATE_LOW = 1 << 31
_STATE_HIGH = 1 << 63
# Bound of the analysis in the module docstring, in 32-bit words.
_READS_PER_SYMBOL = 19
_READS_AT_END = 33
_READS_PER_ONES_WORD = 16
_WORDS_PER_SYMBOL = 10
#: Bytes looked at per step when finding where a string's trailing zeros begin.
_SCAN_BLOCK = 1 << 16

_DEFAULT: Any = object()

Strings = Sequence[Sequence[bytes]]


@dataclass(frozen=True)
class LatentLayout:
    r"""How a model's entropy-coded latents scale with the ``shape`` it decodes.

    Found by :func:`latent_layout` from one small ``compress`` and ``forward``.

    Args:
        num_strings: ``len(model.compress(x)["strings"])``.
        padding_multiple: the model's ``downsampling_factor`` (images are padded
            to multiples of it before ``compress``).
        image_per_unit: decoded image pixels per unit of ``shape``, per dimension
            (64 for the hyperprior models, whose ``shape`` is the size of ``z``;
            16 for ``bmshj2018-factorized``, whose ``shape`` is that of ``y``).
        latents: per string list, the channels of the latent and its size per
            unit of ``shape``, per dimension (``y``: 4, ``z``: 1 for the
            hyperprior models).
    """

    num_strings: int
    padding_multiple: int
    image_per_unit: Tuple[Fraction, ...]
    latents: Tuple[Tuple[int, Tuple[Fraction, ...]], ...]

    @property
    def shape_ndim(self) -> int:
        return len(self.image_per_unit)

    def image_size(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """Size of the (padded) image decoded from ``shape``."""
        return tuple(math.ceil(s * f) for s, f in zip(shape, self.image_per_unit))

    def symbols(self, shape: Sequence[int]) -> List[int]:
        """Symbols entropy-coded in each string (per batch element) for ``shape``."""
        counts = []
        for channels, per_unit in self.latents:
            count = channels
            for s, f in zip(shape, per_unit):
                count *= math.ceil(s * f)
            counts.append(count)
        return counts

    def shape_for_image(self, size: Sequence[int]) -> Tuple[int, ...]:
        """The ``shape`` that ``compress`` returns for an image of ``size``
        (before padding)."""
        if len(size) != self.shape_ndim:
            raise BitstreamError(
                f"image size {tuple(size)} has {len(size)} dimensions, the model's "
                f"latent shape {self.shape_ndim}"
            )
        m = self.padding_multiple
        return tuple(
            math.ceil(math.ceil(s / m) * m / f)
            for s, f in zip(size, self.image_per_unit)
        )


_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, LatentLayout] = (
    weakref.WeakKeyDictionary()
)


def latent_layout(model: nn.Module) -> LatentLayout:
    r"""The :class:`LatentLayout` of ``model`` (probed once, then cached).

    The probe runs ``compress`` and ``forward`` on one zero image of
    ``downsampling_factor`` × twice that, so it works for every CompressAI image
    model whose ``forward`` returns one likelihood tensor per string list of
    ``compress``, in the same order (all six zoo architectures do). The model
    must be ready to decode (``update()`` done).

    Raises:
        ValueError: when the model does not follow that convention.
    """
    layout = _LAYOUTS.get(model)
    if layout is None:
        layout = _probe(model)
        _LAYOUTS[model] = layout
    return layout


def _probe(model: nn.Module) -> LatentLayout:
    multiple = int(getattr(model, "downsampling_factor", 64))
    size = (multiple, 2 * multiple)
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    x = torch.zeros(1, 3, *size, device=device)
    with torch.no_grad(), warnings.catch_warnings():
        # Autoregressive models warn about entropy coding on a GPU.
        warnings.simplefilter("ignore")
        compressed = model.compress(x)
        likelihoods = model(x)["likelihoods"]
    strings = compressed["strings"]
    shape = tuple(int(s) for s in compressed["shape"])
    tensors = list(likelihoods.values())
    name = type(model).__name__
    if len(tensors) != len(strings) or not shape:
        raise ValueError(
            f"{name}: compress() returns {len(strings)} string lists but forward() "
            f"{len(tensors)} likelihoods; cannot check its bitstreams"
        )
    latents = []
    for tensor in tensors:
        spatial = tuple(tensor.shape[2:])
        if len(spatial) != len(shape):
            raise ValueError(
                f"{name}: latent size {spatial} and shape {shape} differ in length"
            )
        per_unit = tuple(Fraction(n, s) for n, s in zip(spatial, shape))
        latents.append((int(tensor.shape[1]), per_unit))
    image_per_unit = tuple(Fraction(n, s) for n, s in zip(size, shape))
    return LatentLayout(len(strings), multiple, image_per_unit, tuple(latents))


def expected_shape(model: nn.Module, height: int, width: int) -> Tuple[int, ...]:
    """The latent ``shape`` that ``model.compress`` gives an image of this size
    (padded to the model's ``downsampling_factor``, as the ``psic`` tool does)."""
    return latent_layout(model).shape_for_image((height, width))


def max_string_length(symbols: int) -> int:
    """Longest string CompressAI's rANS encoder writes for ``symbols`` symbols:
    10 words per symbol at most, plus the 8-byte final state."""
    return MIN_STRING_LENGTH + _WORD * _WORDS_PER_SYMBOL * symbols


def _longest_ones_run(data: bytes) -> int:
    """Longest run of consecutive all-ones 32-bit words in ``data``."""
    if b"\xff\xff\xff\xff" not in data:
        return 0
    words = np.frombuffer(data, dtype=np.uint32, count=len(data) // _WORD)
    ones = np.concatenate(([False], words == 0xFFFFFFFF, [False]))
    edges = np.flatnonzero(np.diff(ones.astype(np.int8)))
    return int((edges[1::2] - edges[0::2]).max()) if edges.size else 0


def padding_bytes(symbols: int, data: bytes) -> int:
    """Zeros to append to ``data`` so that decoding ``symbols`` symbols stays
    inside the buffer: ``76 S + 132 + 64 r`` (see the module docstring)."""
    words = (
        _READS_PER_SYMBOL * symbols
        + _READS_AT_END
        + _READS_PER_ONES_WORD * _longest_ones_run(data)
    )
    return _WORD * words


def _fail(message: str) -> None:
    raise BitstreamError(f"corrupted bitstream: {message}")


def _batch_size(strings: Any, layout: LatentLayout) -> int:
    if not isinstance(strings, (list, tuple)):
        _fail(f"strings must be a list of string lists, got {type(strings).__name__}")
    if len(strings) != layout.num_strings:
        _fail(
            f"{len(strings)} string lists, the model entropy-codes "
            f"{layout.num_strings} latents"
        )
    sizes = set()
    for index, latent in enumerate(strings):
        if not isinstance(latent, (list, tuple)) or not latent:
            _fail(f"latent {index} must be a non-empty list of strings")
        sizes.add(len(latent))
        for string in latent:
            if not isinstance(string, (bytes, bytearray)):
                _fail(f"strings must be bytes, got {type(string).__name__}")
    if len(sizes) != 1:
        _fail(f"the latents have different batch sizes {sorted(sizes)}")
    return sizes.pop()


def _shape(shape: Any, layout: LatentLayout) -> Tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (
        dims is None
        or len(dims) != layout.shape_ndim
        or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
            for d in dims
        )
    ):
        _fail(f"latent shape {shape!r}: expected {layout.shape_ndim} positive integers")
    return tuple(int(d) for d in dims)


def _data_length(string: bytes) -> int:
    """Length of ``string`` without trailing zero words (padding, if any)."""
    length = len(string)
    if length and not string[-1]:
        # Zeros at the end (padding): found block by block with NumPy, since
        # ``bytes.rstrip`` walks them one byte at a time (37 ms for the 22 MB of
        # a 512x768 image).
        view = np.frombuffer(string, dtype=np.uint8)
        end, length = length, 0
        while end > 0:
            start = max(0, end - _SCAN_BLOCK)
            nonzero = np.flatnonzero(view[start:end])
            if nonzero.size:
                length = start + int(nonzero[-1]) + 1
                break
            end = start
    return max(MIN_STRING_LENGTH, length + (-length) % _WORD)


def _check_string(string: bytes, symbols: int, where: str) -> None:
    length = len(string)
    if length < MIN_STRING_LENGTH:
        _fail(
            f"{where} has {length} bytes; an entropy-coded string has at least "
            f"{MIN_STRING_LENGTH}"
        )
    if length % _WORD:
        _fail(f"{where} has {length} bytes, not a whole number of 32-bit words")
    # Trailing zero words are padding (they read as the zeros pad_strings adds).
    length = _data_length(string)
    limit = max_string_length(symbols)
    if length > limit:
        _fail(
            f"{where} has {length} bytes, more than the encoder writes for "
            f"{symbols} symbols ({limit})"
        )
    order = sys.byteorder
    state = int.from_bytes(string[0:4], order) | (
        int.from_bytes(string[4:8], order) << 32
    )
    if not _STATE_LOW <= state < _STATE_HIGH:
        _fail(f"{where} starts with a state the encoder never writes")


def validate_decode_inputs(
    model: nn.Module,
    strings: Strings,
    shape: Sequence[int],
    max_pixels: Optional[int] = MAX_DECODE_PIXELS,
    image_size: Optional[Sequence[int]] = None,
) -> None:
    r"""Refuses ``decompress(strings, shape)`` inputs that do not fit ``model``.

    Args:
        model: a CompressAI image model ready to decode (``update()`` done).
        strings: ``out["strings"]`` of ``compress``: one list per latent, one
            ``bytes`` per batch element.
        shape: ``out["shape"]`` of ``compress``.
        max_pixels: most decoded pixels (padded size × batch size); default
            :data:`MAX_DECODE_PIXELS`, ``None`` for no limit.
        image_size: ``(height, width)`` of the original image, when known (the
            ``.psic`` header has it): ``shape`` must then be exactly its shape.

    Raises:
        BitstreamError: for a wrong number of string lists, batch sizes that
            differ, a shape of the wrong length or not positive, a shape that is
            not the one of ``image_size``, or a string CompressAI's encoder cannot
            have written (shorter than 8 bytes, not whole 32-bit words, longer
            than :func:`max_string_length`, or a first state outside rANS's
            interval).
        PixelLimitError: when the decode would exceed ``max_pixels``.
    """
    layout = latent_layout(model)
    batch = _batch_size(strings, layout)
    dims = _shape(shape, layout)
    expected = None
    if image_size is not None:
        expected = layout.shape_for_image(tuple(int(s) for s in image_size))
    # The pixel limit first: of the declared image when its size is known (the
    # decode must then have its shape), else of what ``shape`` decodes to.
    limit = max_pixels
    decoded = layout.image_size(expected if expected is not None else dims)
    pixels = batch * math.prod(decoded)
    if limit is not None and pixels > limit:
        size = "x".join(str(s) for s in reversed(decoded))
        count = f"{batch} × {size}" if batch > 1 else size
        declared = ""
        if image_size is not None:
            declared = "x".join(str(int(s)) for s in reversed(tuple(image_size)))
            declared = f" (a {declared} image, padded)"
        raise PixelLimitError(
            f"refused: decoding would produce {count} = {pixels} pixels{declared}, "
            f"over the limit of {limit} (max_pixels; None for no limit)"
        )
    if expected is not None and dims != expected:
        size = "x".join(str(int(s)) for s in reversed(tuple(image_size)))
        _fail(f"latent shape {dims} does not fit a {size} image (expected {expected})")
    for index, (latent, symbols) in enumerate(zip(strings, layout.symbols(dims))):
        for element, string in enumerate(latent):
            where = f"string {index}" + (f" of batch element {element}" * (batch > 1))
            _check_string(string, symbols, where)


def read_in_bounds(model: nn.Module) -> Tuple[bool, ...]:
    """Per string list of ``model.compress``: whether its decoder checks the end
    of the string (:mod:`~compressai_psic.models.rans`), so that it needs no
    padding.

    True when every entropy model of ``model`` decodes through the bounded
    decoder (the package's shielded models, when its extension is built),
    except for the first list of a model with a ``context_prediction`` that
    decodes ``y`` position by position with a ``RansDecoder`` of its own
    (CompressAI's ``mbt2018`` and ``cheng2020-*``, unless shielded: the
    package's classes decode it in bounds,
    :class:`~compressai_psic.models.autoregressive.BoundedAutoregressiveDecoding`).
    """
    layout = latent_layout(model)
    entropy_models = [m for m in model.modules() if isinstance(m, EntropyModel)]
    bounded = bool(entropy_models) and all(
        isinstance(m, BoundedDecompress) and m.decodes_in_bounds for m in entropy_models
    )
    own_decoder = hasattr(model, "context_prediction") and not isinstance(
        model, BoundedAutoregressiveDecoding
    )
    return tuple(
        bounded and not (own_decoder and index == 0)
        for index in range(layout.num_strings)
    )


def pad_strings(
    model: nn.Module, strings: Strings, shape: Sequence[int]
) -> List[List[bytes]]:
    """``strings`` followed by :func:`padding_bytes` zeros each, except those
    that the model decodes in bounds (:func:`read_in_bounds`), returned as
    they are.

    Trailing zero words count as padding already there, so padding twice is a
    no-op (the string is returned as it is). Call :func:`validate_decode_inputs`
    first: the bound assumes its checks.
    """
    layout = latent_layout(model)
    dims = tuple(int(d) for d in shape)
    padded: List[List[bytes]] = []
    for latent, symbols, in_bounds in zip(
        strings, layout.symbols(dims), read_in_bounds(model)
    ):
        if in_bounds:
            padded.append([bytes(string) for string in latent])
            continue
        out: List[bytes] = []
        for string in latent:
            string = bytes(string)
            data = string[: _data_length(string)]
            needed = len(data) + padding_bytes(symbols, data)
            out.append(string if len(string) >= needed else string.ljust(needed, b"\0"))
        padded.append(out)
    return padded


def guard_decode_inputs(
    model: nn.Module,
    strings: Strings,
    shape: Sequence[int],
    max_pixels: Optional[int] = MAX_DECODE_PIXELS,
    image_size: Optional[Sequence[int]] = None,
) -> List[List[bytes]]:
    """:func:`validate_decode_inputs`, then :func:`pad_strings`: strings that
    ``model.decompress(strings, shape)`` decodes without reading past them."""
    validate_decode_inputs(model, strings, shape, max_pixels, image_size)
    return pad_strings(model, strings, shape)


def check_finite(x_hat: Union[Tensor, Sequence[Tensor]]) -> None:
    """Raises :class:`BitstreamError` when a decoded image holds NaN or infinity.

    CompressAI clamps ``x_hat`` to [0, 1], which keeps NaN: a corrupted
    bitstream would otherwise be saved as black pixels without an error.
    """
    images = [x_hat] if isinstance(x_hat, Tensor) else list(x_hat)
    for image in images:
        if not bool(torch.isfinite(image).all()):
            bad = int((~torch.isfinite(image)).sum())
            _fail(f"the decoded image has {bad} non-finite values")


def check_compress_input(
    x: Tensor, low: Optional[float] = 0.0, high: Optional[float] = 1.0
) -> None:
    """Refuses images that CompressAI's encoder cannot code.

    NaN or infinite pixels make the latents NaN; their symbols overflow int32 and
    CompressAI's rANS encoder then loops forever looking for the bits of a
    negative raw value. Values far outside ``[low, high]`` (CompressAI's models
    expect [0, 1]) can overflow the same way. ``None`` skips a bound.

    Raises:
        ValueError: naming the number of non-finite values, or the range found.
    """
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise ValueError(
            f"the image has {int((~finite).sum())} NaN or infinite values; the "
            "codec needs finite pixels in [0, 1]"
        )
    if x.numel() and (
        (low is not None and float(x.min()) < low)
        or (high is not None and float(x.max()) > high)
    ):
        raise ValueError(
            f"pixel values must be in [{low}, {high}], got "
            f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
