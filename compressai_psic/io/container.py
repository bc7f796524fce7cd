r"""The ``.psic`` file format: a small, strictly validated container for bitstreams.

A ``.psic`` file holds the entropy-coded strings that a shielded CompressAI model
produces with ``compress()``, together with everything a decoder needs to rebuild
the image: the model identity (architecture, quality and metric, or the sha256 of
a checkpoint file, plus the seed of randomly initialised models), the original
image size (before padding) and the latent ``shape``. One file decodes to the
protected image by default, or to the full image.

The byte layout is documented in ``docs/FORMAT.md``. The parser treats every file
as untrusted: each field has an explicit length and a hard upper bound, every
length is checked against the bytes that remain, trailing bytes are refused, and
a truncated sha256 checksum covers the whole file. Any malformed input raises
:class:`PSICFormatError` (a :class:`ValueError`) and nothing else; the parser
never allocates more than the size of its input and runs in linear time.

Files are written atomically (:func:`compressai_psic.io.files.write_bytes`).
Nothing here imports torch: ``psic info`` reads files without it.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass, field
from typing import List, Tuple

# Defined in the base layer, so that the core can raise them without this module.
from ..errors import (
    BitstreamError,
    DesyncError,
    ModelMismatchError,
    PixelLimitError,
    PSICFormatError,
)
from .files import PathLike, write_bytes

__all__ = [
    "BitstreamError",
    "CHECKSUM_SIZE",
    "DesyncError",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_ARCHITECTURE_LENGTH",
    "MAX_FILE_SIZE",
    "MAX_IMAGE_SIDE",
    "MAX_LATENTS",
    "MAX_QUALITY",
    "MAX_SHAPE_DIM",
    "MAX_SHAPE_NDIM",
    "METRICS",
    "ModelMismatchError",
    "PSICFile",
    "PSICFormatError",
    "PixelLimitError",
    "check_compatible",
    "dumps",
    "loads",
    "read",
    "write",
]

#: First bytes of every ``.psic`` file.
MAGIC = b"PSIC"
#: Newest version of the byte layout: :func:`dumps` writes it when the file has a
#: symbol digest or is portable, version 1 otherwise (the same bytes as before).
FORMAT_VERSION = 2
#: Versions :func:`loads` reads. Version 2 adds flag bits 2 (symbol digest, a
#: ``u32`` after the seed) and 3 (portable entropy parameters).
SUPPORTED_VERSIONS = (1, 2)
#: Bytes of the truncated sha256 that ends every file.
CHECKSUM_SIZE = 16
#: Longest architecture name, in bytes.
MAX_ARCHITECTURE_LENGTH = 64
#: Highest quality index (CompressAI's zoo uses 1–8; 0 in the file means "none").
MAX_QUALITY = 8
#: Largest original image height or width.
MAX_IMAGE_SIDE = 65535
#: Most dimensions in the latent ``shape``.
MAX_SHAPE_NDIM = 4
#: Largest value of one ``shape`` dimension.
MAX_SHAPE_DIM = 1 << 20
#: Most latents (entries of ``strings``) in one file.
MAX_LATENTS = 8
#: Default size limit of :func:`read`, in bytes.
MAX_FILE_SIZE = 1 << 30

#: Metric codes stored in the file; 0 means "no metric".
METRICS = {"mse": 1, "ms-ssim": 2}
_METRIC_NAMES = {code: name for name, code in METRICS.items()}

# Flag bits of the header; the other bits are reserved and must be zero.
_FLAG_CHECKPOINT = 0x01
_FLAG_SEED = 0x02
_FLAG_DIGEST = 0x04
_FLAG_PORTABLE = 0x08
_KNOWN_FLAGS = {
    1: _FLAG_CHECKPOINT | _FLAG_SEED,
    2: _FLAG_CHECKPOINT | _FLAG_SEED | _FLAG_DIGEST | _FLAG_PORTABLE,
}
_MAX_DIGEST = (1 << 32) - 1

# One batch element per latent: files hold a single image.
_BATCH_SIZE = 1
_MAX_SEED = (1 << 64) - 1
_SHA256_SIZE = 32
_ARCHITECTURE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")


@dataclass
class PSICFile:
    r"""Content of one ``.psic`` file.

    Args:
        architecture: architecture name (e.g. ``"bmshj2018-hyperprior"``).
        quality: zoo quality index (1–8), or ``None`` when the model is not a zoo
            model.
        metric: ``"mse"`` or ``"ms-ssim"``, or ``None``; set together with
            ``quality``.
        checkpoint_sha256: lowercase hex sha256 of the weights file when a
            checkpoint was used, ``None`` for zoo models.
        height: original image height, before padding.
        width: original image width, before padding.
        shape: the ``shape`` value returned by ``model.compress`` (the latent size).
        strings: ``out["strings"]`` of ``model.compress``: one list per latent,
            one ``bytes`` per batch element (files hold one image, so one each).
        seed: seed of the random initialisation for randomly initialised models,
            ``None`` for trained weights.
        symbols_digest: CRC-32 of the latent symbols the encoder coded
            (:mod:`compressai_psic.models.symbols`), ``None`` when absent
            (version 1 files): the decoder checks its symbols against it.
        portable: the entropy parameters were computed in integer arithmetic
            (:mod:`compressai_psic.models.portable`): decode with
            ``portable=True``, on any machine.
    """

    architecture: str
    quality: int | None
    metric: str | None
    checkpoint_sha256: str | None
    height: int
    width: int
    shape: Tuple[int, ...]
    strings: List[List[bytes]] = field(repr=False)
    seed: int | None = None
    symbols_digest: int | None = None
    portable: bool = False

    @property
    def format_version(self) -> int:
        """The version :func:`dumps` writes: 2 with a symbol digest or portable
        entropy parameters, else 1."""
        return 2 if self.symbols_digest is not None or self.portable else 1

    def model_description(self) -> str:
        """Human-readable identity of the model that wrote the file."""
        return describe_model(
            self.architecture,
            self.quality,
            self.metric,
            self.checkpoint_sha256,
            self.seed,
        )

    def payload_size(self) -> int:
        """Total bytes of the entropy-coded strings."""
        return sum(len(s) for latent in self.strings for s in latent)


def describe_model(
    architecture: str,
    quality: int | None = None,
    metric: str | None = None,
    checkpoint_sha256: str | None = None,
    seed: int | None = None,
) -> str:
    """Human-readable model identity, as used in error messages and ``psic info``."""
    details = []
    if quality is not None:
        details.append(f"quality {quality}")
    if metric is not None:
        details.append(f"metric {metric}")
    if checkpoint_sha256 is not None:
        details.append(f"checkpoint sha256 {checkpoint_sha256[:12]}")
    if seed is not None:
        details.append(f"random init, seed {seed}")
    elif checkpoint_sha256 is None:
        details.append("pretrained")
    return f"{architecture} ({', '.join(details)})"


def _validate(obj: PSICFile, error: type) -> None:
    """Checks every field of ``obj``; raises ``error`` with a message naming it."""
    if not isinstance(obj.architecture, str) or not obj.architecture:
        raise error("architecture must be a non-empty string")
    if len(obj.architecture) > MAX_ARCHITECTURE_LENGTH or not (
        _ARCHITECTURE_RE.fullmatch(obj.architecture)
    ):
        raise error(
            f"invalid architecture name {obj.architecture!r}: at most "
            f"{MAX_ARCHITECTURE_LENGTH} ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if (obj.quality is None) != (obj.metric is None):
        raise error("quality and metric must be given together (or both be None)")
    if obj.quality is not None and (
        not _is_int(obj.quality) or not 1 <= obj.quality <= MAX_QUALITY
    ):
        raise error(f"invalid quality {obj.quality!r}: allowed 1..{MAX_QUALITY}")
    if obj.metric is not None and obj.metric not in METRICS:
        raise error(f"invalid metric {obj.metric!r}: allowed {sorted(METRICS)}")
    if obj.checkpoint_sha256 is not None and (
        not isinstance(obj.checkpoint_sha256, str)
        or not _SHA256_HEX_RE.fullmatch(obj.checkpoint_sha256)
    ):
        raise error(
            f"invalid checkpoint_sha256 {obj.checkpoint_sha256!r}: "
            "64 lowercase hex digits required"
        )
    if obj.seed is not None and (
        not _is_int(obj.seed) or not 0 <= obj.seed <= _MAX_SEED
    ):
        raise error(f"invalid seed {obj.seed!r}: allowed 0..2**64-1")
    if obj.symbols_digest is not None and (
        not _is_int(obj.symbols_digest) or not 0 <= obj.symbols_digest <= _MAX_DIGEST
    ):
        raise error(
            f"invalid symbols_digest {obj.symbols_digest!r}: allowed 0..2**32-1"
        )
    if not isinstance(obj.portable, bool):
        raise error(f"invalid portable {obj.portable!r}: True or False")
    for name in ("height", "width"):
        value = getattr(obj, name)
        if not _is_int(value) or not 1 <= value <= MAX_IMAGE_SIDE:
            raise error(f"invalid {name} {value!r}: allowed 1..{MAX_IMAGE_SIDE}")
    shape = tuple(obj.shape) if isinstance(obj.shape, (tuple, list)) else None
    if shape is None or not 1 <= len(shape) <= MAX_SHAPE_NDIM:
        raise error(
            f"invalid shape {obj.shape!r}: a tuple of 1..{MAX_SHAPE_NDIM} integers"
        )
    for dim in shape:
        if not _is_int(dim) or not 1 <= dim <= MAX_SHAPE_DIM:
            raise error(
                f"invalid shape {obj.shape!r}: dimensions must be 1..{MAX_SHAPE_DIM}"
            )
    if not isinstance(obj.strings, (list, tuple)) or not (
        1 <= len(obj.strings) <= MAX_LATENTS
    ):
        raise error(f"strings must be a list of 1..{MAX_LATENTS} latents")
    for latent in obj.strings:
        if not isinstance(latent, (list, tuple)) or len(latent) != _BATCH_SIZE:
            raise error(
                "every latent must hold exactly one string (files hold one image)"
            )
        for string in latent:
            if not isinstance(string, (bytes, bytearray)):
                raise error(f"strings must be bytes, got {type(string).__name__}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dumps(obj: PSICFile) -> bytes:
    """Serialises ``obj`` to the bytes of a ``.psic`` file.

    Raises:
        PSICFormatError: when a field is out of range (the message names the field
            and its allowed values).
    """
    _validate(obj, PSICFormatError)
    architecture = obj.architecture.encode("ascii")
    flags = 0
    if obj.checkpoint_sha256 is not None:
        flags |= _FLAG_CHECKPOINT
    if obj.seed is not None:
        flags |= _FLAG_SEED
    if obj.symbols_digest is not None:
        flags |= _FLAG_DIGEST
    if obj.portable:
        flags |= _FLAG_PORTABLE
    parts = [
        MAGIC,
        struct.pack(">BB", obj.format_version, len(architecture)),
        architecture,
        struct.pack(
            ">BBB",
            obj.quality or 0,
            METRICS[obj.metric] if obj.metric is not None else 0,
            flags,
        ),
    ]
    if obj.checkpoint_sha256 is not None:
        parts.append(bytes.fromhex(obj.checkpoint_sha256))
    if obj.seed is not None:
        parts.append(struct.pack(">Q", obj.seed))
    if obj.symbols_digest is not None:
        parts.append(struct.pack(">I", obj.symbols_digest))
    shape = tuple(obj.shape)
    parts.append(struct.pack(">HHB", obj.height, obj.width, len(shape)))
    parts.append(struct.pack(f">{len(shape)}I", *shape))
    parts.append(struct.pack(">BB", len(obj.strings), _BATCH_SIZE))
    for latent in obj.strings:
        for string in latent:
            if len(string) > 0xFFFFFFFF:
                raise PSICFormatError("a string is longer than 2**32 - 1 bytes")
            parts.append(struct.pack(">I", len(string)))
            parts.append(bytes(string))
    body = b"".join(parts)
    return body + _checksum(body)


def _checksum(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()[:CHECKSUM_SIZE]


class _Reader:
    """Bounds-checked cursor over the bytes of a file."""

    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.pos = 0
        # The checksum is not part of the fields: stop before it.
        self.end = end

    def take(self, size: int, what: str) -> bytes:
        if size > self.end - self.pos:
            raise PSICFormatError(
                f"truncated or corrupted file: {what} needs {size} bytes, "
                f"{max(self.end - self.pos, 0)} left"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def loads(data: bytes) -> PSICFile:
    """Parses the bytes of a ``.psic`` file.

    Raises:
        PSICFormatError: for any malformed, truncated, corrupted or unsupported
            input, and for nothing else.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PSICFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC:
        raise PSICFormatError("not a PSIC file (wrong magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise PSICFormatError("truncated file: no format version")
    version = data[len(MAGIC)]
    if version not in SUPPORTED_VERSIONS:
        raise PSICFormatError(
            f"unsupported PSIC format version {version}: this reader supports "
            f"versions {', '.join(str(v) for v in SUPPORTED_VERSIONS)}"
        )
    if len(data) < len(MAGIC) + 1 + CHECKSUM_SIZE:
        raise PSICFormatError(f"truncated file: only {len(data)} bytes")
    reader = _Reader(data, len(data) - CHECKSUM_SIZE)
    reader.take(len(MAGIC) + 1, "magic and version")

    (arch_length,) = reader.unpack(">B", "architecture length")
    if not 1 <= arch_length <= MAX_ARCHITECTURE_LENGTH:
        raise PSICFormatError(
            f"invalid architecture length {arch_length}: allowed "
            f"1..{MAX_ARCHITECTURE_LENGTH}"
        )
    raw_architecture = reader.take(arch_length, "architecture name")
    try:
        architecture = raw_architecture.decode("ascii")
    except UnicodeDecodeError:
        raise PSICFormatError("architecture name is not ASCII") from None

    quality_code, metric_code, flags = reader.unpack(">BBB", "quality, metric, flags")
    if flags & ~_KNOWN_FLAGS[version]:
        raise PSICFormatError(
            f"unknown header flags 0x{flags:02x} for format version {version}"
        )
    if version > 1 and not flags & (_FLAG_DIGEST | _FLAG_PORTABLE):
        raise PSICFormatError(
            "format version 2 without a symbol digest or the portable flag: "
            "such a file is written as version 1"
        )
    if metric_code and metric_code not in _METRIC_NAMES:
        raise PSICFormatError(
            f"unknown metric code {metric_code}: allowed 0 (none), "
            + ", ".join(f"{code} ({name})" for code, name in _METRIC_NAMES.items())
        )
    if quality_code > MAX_QUALITY:
        raise PSICFormatError(
            f"invalid quality {quality_code}: allowed 0 (none) or 1..{MAX_QUALITY}"
        )
    if bool(quality_code) != bool(metric_code):
        raise PSICFormatError(
            "quality and metric must be given together (or both be none)"
        )
    quality = quality_code or None
    metric = _METRIC_NAMES[metric_code] if metric_code else None

    checkpoint_sha256 = None
    if flags & _FLAG_CHECKPOINT:
        checkpoint_sha256 = reader.take(_SHA256_SIZE, "checkpoint sha256").hex()
    seed = None
    if flags & _FLAG_SEED:
        (seed,) = reader.unpack(">Q", "seed")
    symbols_digest = None
    if flags & _FLAG_DIGEST:
        (symbols_digest,) = reader.unpack(">I", "symbol digest")

    height, width, ndim = reader.unpack(">HHB", "image size and shape length")
    if not 1 <= ndim <= MAX_SHAPE_NDIM:
        raise PSICFormatError(
            f"invalid shape length {ndim}: allowed 1..{MAX_SHAPE_NDIM}"
        )
    shape = reader.unpack(f">{ndim}I", "shape")
    num_latents, batch_size = reader.unpack(">BB", "number of latents, batch size")
    if not 1 <= num_latents <= MAX_LATENTS:
        raise PSICFormatError(
            f"invalid number of latents {num_latents}: allowed 1..{MAX_LATENTS}"
        )
    if batch_size != _BATCH_SIZE:
        raise PSICFormatError(
            f"invalid batch size {batch_size}: files hold exactly {_BATCH_SIZE} image"
        )
    strings = []
    for index in range(num_latents):
        latent = []
        for _ in range(batch_size):
            (length,) = reader.unpack(">I", f"length of string {index}")
            latent.append(reader.take(length, f"string {index}"))
        strings.append(latent)

    if reader.pos != reader.end:
        raise PSICFormatError(
            f"corrupted file: {reader.end - reader.pos} unexpected bytes after the "
            "last string"
        )
    if _checksum(data[: reader.end]) != data[reader.end :]:
        raise PSICFormatError("corrupted file: checksum mismatch")

    obj = PSICFile(
        architecture=architecture,
        quality=quality,
        metric=metric,
        checkpoint_sha256=checkpoint_sha256,
        height=height,
        width=width,
        shape=tuple(shape),
        strings=strings,
        seed=seed,
        symbols_digest=symbols_digest,
        portable=bool(flags & _FLAG_PORTABLE),
    )
    _validate(obj, PSICFormatError)
    return obj


def write(path: PathLike, obj: PSICFile) -> int:
    """Writes ``obj`` to ``path`` atomically; returns the number of bytes written.

    The file gets the permissions of any new file (``0o666`` less the umask).

    Raises:
        PSICFormatError: when a field of ``obj`` is out of range.
        OSError: when ``path`` cannot be written (the message names ``path``).
    """
    data = dumps(obj)
    write_bytes(path, data)
    return len(data)


def read(path: PathLike, max_size: int = MAX_FILE_SIZE) -> PSICFile:
    """Reads and parses a ``.psic`` file of at most ``max_size`` bytes.

    Only the bytes the file holds are allocated (not ``max_size``).

    Raises:
        PSICFormatError: when the file is larger than ``max_size`` or malformed;
            the message starts with the file's path.
        OSError: when the file cannot be opened (missing, unreadable, a folder).
    """
    try:
        return _read(path, max_size)
    except PSICFormatError as exc:
        raise PSICFormatError(f"{os.fspath(path)}: {exc}") from None


def _read(path: PathLike, max_size: int) -> PSICFile:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_size:
            raise _too_large(max_size)
        # Read what the file system reports, then go on in bounded chunks: pipes
        # report 0 bytes and files may grow, so the size is not trusted.
        data = bytearray(f.read(size))
        while len(data) <= max_size:
            chunk = f.read(min(1 << 20, max_size + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    if len(data) > max_size:
        raise _too_large(max_size)
    return loads(bytes(data))


def _too_large(max_size: int) -> PSICFormatError:
    return PSICFormatError(
        f"file is larger than the {max_size}-byte limit of this reader"
    )


def check_compatible(
    psic_file: PSICFile,
    architecture: str,
    quality: int | None = None,
    metric: str | None = None,
    checkpoint_sha256: str | None = None,
    seed: int | None = None,
) -> None:
    """Refuses to decode ``psic_file`` with a model of another identity.

    The identity is the architecture, quality, metric, checkpoint hash and seed (of
    randomly initialised models); all must match the file header.

    Raises:
        ModelMismatchError: naming both models when they differ.
    """
    expected = (
        psic_file.architecture,
        psic_file.quality,
        psic_file.metric,
        psic_file.checkpoint_sha256,
        psic_file.seed,
    )
    if checkpoint_sha256 is not None:
        checkpoint_sha256 = checkpoint_sha256.lower()
    given = (architecture, quality, metric, checkpoint_sha256, seed)
    if expected != given:
        raise ModelMismatchError(
            f"model mismatch: the file was written by "
            f"{psic_file.model_description()}, but the decoder is "
            f"{describe_model(*given)}"
        )
