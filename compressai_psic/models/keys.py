r"""The publisher's secret: keys, key files and the per-image key noise.

The unlock condition of PSIC (`"Privacy-Shielded Image Compression…"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025) is public: anyone holding the
decoder can fit a latent that reproduces a published protected decode and decode
it on the full path. A keyed model (:class:`~compressai_psic.models.keyed.
KeyedLatentShift`) makes the protected decode depend on a secret the publisher
keeps instead (Kerckhoffs: the model is public, the key is not):

.. code-block:: none

    secret key (32 bytes, never in a bitstream, a file we write or a message)
        │
        ▼   HMAC-SHA256(key, "psic-key-noise-v1" ‖ strings of image i ‖ shape)
    seed_i (64 bits): a new one for every bitstream, so no two published images
        │            share their noise, and the noise of one says nothing of another
        ▼   torch.Generator(cpu).manual_seed(seed_i) → N(0, 1)
    noise_i (K × h × w, at the latent's resolution) ─► Δ(ŷ, noise) ─► g_s(ŷ + Δ, full)

The noise is drawn on the CPU with PyTorch's own generator, so every machine
draws the same numbers for the same key and bitstream.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Any, List, Sequence, Union

import torch
from torch import Tensor

from ..errors import KeyFileError

__all__ = [
    "KEY_BYTES",
    "KEY_FILE_HEADER",
    "ShieldKey",
    "image_seeds",
    "key_noise",
    "read_key_file",
    "write_key_file",
]

#: Length of a key: 256 bits.
KEY_BYTES = 32
#: First word of a key file; the second is the key in hexadecimal.
KEY_FILE_HEADER = "PSIC-KEY-1"
_NOISE_DOMAIN = b"psic-key-noise-v1"


class ShieldKey:
    """A publisher's secret: 32 random bytes.

    Its ``repr`` and ``str`` never show the bytes, so a key that ends up in a log
    or a traceback gives nothing away. Make one with :meth:`generate`, keep it
    with :func:`write_key_file`.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes):
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError(f"A key is {KEY_BYTES} bytes, got {type(secret).__name__}")
        if len(secret) != KEY_BYTES:
            raise ValueError(f"A key is {KEY_BYTES} bytes, got {len(secret)}")
        self._secret = bytes(secret)

    @classmethod
    def generate(cls) -> ShieldKey:
        """A fresh key from the operating system's secure random source."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def derived(cls, text: str) -> ShieldKey:
        """SHA-256 of ``text``: a key anyone who knows ``text`` can make. For
        evaluations and the demo, which must rebuild their figures exactly; never
        for publishing."""
        return cls(hashlib.sha256(text.encode("utf-8")).digest())

    @classmethod
    def from_hex(cls, text: str) -> ShieldKey:
        """The key written as 64 hexadecimal digits."""
        text = text.strip()
        if len(text) != 2 * KEY_BYTES or any(
            c not in "0123456789abcdefABCDEF" for c in text
        ):
            raise ValueError(f"A key is {2 * KEY_BYTES} hexadecimal digits")
        return cls(bytes.fromhex(text))

    def hex(self) -> str:
        """The key as 64 hexadecimal digits (what a key file holds)."""
        return self._secret.hex()

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key."""
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ShieldKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.digest(b"psic-key-hash"))

    def __repr__(self) -> str:
        return "ShieldKey(<secret>)"

    __str__ = __repr__

    def __reduce__(self):
        # A key is never pickled by accident (into a checkpoint, a worker's
        # arguments): pass its hex() explicitly where it must travel.
        raise TypeError("A ShieldKey is not pickled; pass key.hex() explicitly")


def _frame(data: bytes) -> bytes:
    """``data`` with its length in front, so concatenations are unambiguous."""
    return len(data).to_bytes(8, "big") + data


def image_seeds(
    key: ShieldKey, strings: Sequence[Sequence[bytes]], shape: Any
) -> List[int]:
    """One 64-bit seed per image of a bitstream: HMAC of its strings and shape.

    Args:
        key: the publisher's key
        strings: CompressAI's strings, one list per entropy model, one ``bytes``
            per image in each
        shape: the latent shape ``decompress`` gets (part of the message, so the
            same bytes read at another size give other noise)
    """
    if not isinstance(key, ShieldKey):
        raise TypeError(
            f"key must be a ShieldKey (read_key_file or ShieldKey.generate), "
            f"got {type(key).__name__}"
        )
    dims = [int(d) for d in shape]
    header = _NOISE_DOMAIN + _frame(b",".join(str(d).encode() for d in dims))
    batch = len(strings[0])
    seeds = []
    for i in range(batch):
        message = header + b"".join(_frame(bytes(s[i])) for s in strings)
        seeds.append(int.from_bytes(key.digest(message)[:8], "big"))
    return seeds


def key_noise(
    seeds: Sequence[int], channels: int, size: Sequence[int], like: Tensor
) -> Tensor:
    """``(len(seeds), channels, *size)`` standard normal noise, one seed per image,
    drawn on the CPU (the same numbers on every machine), then moved to ``like``'s
    device and dtype."""
    rows = []
    for seed in seeds:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        rows.append(torch.randn(channels, *size, generator=generator))
    noise = torch.stack(rows) if rows else torch.zeros(0, channels, *size)
    return noise.to(device=like.device, dtype=like.dtype)


def write_key_file(
    path: Union[str, os.PathLike], key: ShieldKey, force: bool = False
) -> Path:
    """Writes ``key`` to a new file readable by its owner only (mode 0600).

    An existing file is refused unless ``force`` (then replaced, mode 0600 too).
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} exists; a key file is never replaced unless asked (-f/--force)"
        ) from None
    try:
        os.fchmod(fd, 0o600)  # O_TRUNC keeps an old file's mode
        os.write(fd, f"{KEY_FILE_HEADER} {key.hex()}\n".encode("ascii"))
    finally:
        os.close(fd)
    return path


def read_key_file(path: Union[str, os.PathLike], check_mode: bool = True) -> ShieldKey:
    """Reads a key file written by :func:`write_key_file` (``psic keygen``).

    Raises :class:`~compressai_psic.errors.KeyFileError` (one line, never any of
    the file's content) for a missing or malformed file and, with
    ``check_mode``, for a file that others than its owner may read.
    """
    path = Path(path)
    try:
        info = path.stat()
        data = path.read_bytes() if path.is_file() else None
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    if data is None:
        raise KeyFileError(f"{path} is not a file")
    if (
        check_mode
        and os.name == "posix"
        and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ):
        raise KeyFileError(
            f"{path} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"chmod 600 {path}"
        )
    words = data.decode("ascii", errors="replace").split()
    if len(words) != 2 or words[0] != KEY_FILE_HEADER:
        raise KeyFileError(
            f"{path} is not a psic key file (want '{KEY_FILE_HEADER}' and "
            f"{2 * KEY_BYTES} hexadecimal digits; psic keygen writes one)"
        )
    try:
        return ShieldKey.from_hex(words[1])
    except ValueError:
        raise KeyFileError(
            f"{path} is not a psic key file (its key is not {2 * KEY_BYTES} "
            "hexadecimal digits)"
        ) from None
