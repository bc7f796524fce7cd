"""Writing files atomically and hashing them (torch only to save weights).

:func:`write_bytes` is how the package writes ``.psic`` files, manifests and
exported weights: a temporary file renamed into place, with the permissions of
any new file. :func:`file_sha256` is the identity of a weights file, as stored
in ``.psic`` headers and in the zoo manifest. :func:`save_state_dict` is the one
writer of published weights, ``<name>-<sha256[:8]>.pth.tar``, which every
exporter calls (``utils.update_model``, the demo codecs' and the demo VLPs'
training tools).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Union

__all__ = [
    "HASH_PREFIX_LENGTH",
    "PathLike",
    "WEIGHTS_SUFFIX",
    "file_sha256",
    "float16_state_dict",
    "save_state_dict",
    "write_bytes",
]

#: Suffix of weights files, as CompressAI names them.
WEIGHTS_SUFFIX = ".pth.tar"
#: Hex digits of the sha256 in a weights file's name (CompressAI: 8).
HASH_PREFIX_LENGTH = 8

PathLike = Union[str, "os.PathLike[str]"]


def _new_file_mode() -> int:
    """Permissions a new file gets under the current umask (``0o666 & ~umask``)."""
    try:
        # Linux reports the umask without changing it (os.umask would, briefly,
        # for every thread of the process).
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically, with the umask's permissions.

    The bytes go to a temporary file next to ``path``, which is then renamed, so
    that an interrupted run never leaves a half-written file behind. Unlike a
    plain :func:`tempfile.mkstemp` file (always ``0o600``), the result has the
    permissions any new file would get (``0o666`` less the umask).

    Raises:
        OSError: when ``path`` cannot be written; the message names ``path``,
            not the temporary file.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or "cannot write", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), _new_file_mode())
        os.replace(tmp_name, path)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (tmp_name, None):
            raise OSError(
                exc.errno, exc.strerror or "cannot write", str(path)
            ) from None
        raise


def file_sha256(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Lowercase hex sha256 of a file (the checkpoint identity stored in headers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def float16_state_dict(model: Any) -> Mapping[str, Any]:
    """``model``'s state dict with float16 parameters, for shipping small files.

    The parameters are rounded to float16 in the model first and its entropy
    models' CDF tables recomputed from the rounded values, so the stored tables
    match the weights a user loads (parameters load back into float32). Buffers
    (CDF tables, GDN's reparametrisation pedestals, the scale table) stay exact: a
    pedestal of 2⁻³⁶ would round to zero in float16.
    """
    import torch

    names = {name for name, _ in model.named_parameters()}
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())
    model.update(force=True)
    state = model.state_dict()
    return type(state)(
        (key, value.detach().cpu().half() if key in names else value)
        for key, value in state.items()
    )


def save_state_dict(
    state_dict: Mapping[str, Any], output_dir: PathLike, name: str
) -> Dict[str, Any]:
    """Writes ``state_dict`` as ``<output_dir>/<name>-<sha256[:8]>.pth.tar``.

    The archive is serialised in memory: ``torch.save`` to a file names the
    records of its zip archive after that file, so writing through a temporary
    file would make every export differ. The same state dict therefore gives the
    same bytes and the same name on every run; the file is then written with
    :func:`write_bytes` (atomic, the umask's permissions, nothing left behind on
    failure).

    Returns:
        ``{"path", "sha256"}`` of the written file.

    Raises:
        ValueError: when ``name`` is not a plain file name.
    """
    import torch

    if not name or "/" in name or os.sep in name:
        raise ValueError(f"Invalid model name {name!r}: a plain file name is needed")
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{digest[:HASH_PREFIX_LENGTH]}{WEIGHTS_SUFFIX}"
    write_bytes(target, data)
    return {"path": target, "sha256": digest}
