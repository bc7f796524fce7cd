r"""Result files: CompressAI's ``eval_model`` JSON, read and written safely.

The JSON written here is strict (RFC 8259): a value that is not a finite number
(the MS-SSIM of images too small for it, a PSNR of a lossless decode) is written
as ``null``, never as ``NaN`` or ``Infinity``, which other JSON readers refuse.
Files are never replaced unless the caller asks (``force``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Union

__all__ = [
    "RESULT_KEYS",
    "check_new_files",
    "curve",
    "finite_json",
    "load_results",
    "write_json",
]

#: Keys of ``results`` in CompressAI's ``eval_model`` JSON, in its order.
RESULT_KEYS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time")

PathLike = Union[str, os.PathLike]


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def check_new_files(paths: Iterable[PathLike], force: bool = False) -> None:
    """Raises ``FileExistsError`` naming the first existing file, unless ``force``.

    Called before any slow work, so that a run never ends in a refusal.
    """
    if force:
        return
    for path in paths:
        if Path(path).exists():
            raise FileExistsError(
                f"{path} exists; pass -f/--force to replace it, or choose another name"
            )


def write_json(path: PathLike, data: Any) -> Path:
    """Writes ``data`` as strict, indented JSON (non-finite numbers as ``null``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_json(data), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_results(path: PathLike) -> Dict[str, Any]:
    """One ``eval_model`` JSON file (CompressAI's or this package's), checked.

    ``null`` values (written for non-finite numbers) come back as NaN.

    Raises:
        ValueError: when the file is not such a JSON, naming the file and what is
            missing.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(
            f"{path}: not an eval_model result (no 'results' object); expected "
            '{"name", "description", "results": {"psnr-rgb", "bpp", ...}}'
        )
    results = data["results"]
    if "bpp" not in results:
        raise ValueError(f"{path}: its results have no 'bpp'")
    for key, values in results.items():
        if not isinstance(values, list):
            values = [values]
        results[key] = [math.nan if v is None else float(v) for v in values]
    data.setdefault("name", path.stem)
    return data


def curve(data: Mapping[str, Any], metric: str) -> List[Sequence[float]]:
    """``[bpp, metric]`` of one result, sorted by rate, points with a missing
    value left out."""
    results = data["results"]
    if metric not in results:
        raise ValueError(
            f"{data.get('name')}: no {metric!r} in its results; allowed: "
            f"{', '.join(k for k in results if k != 'bpp')}"
        )
    pairs = sorted(
        (r, v)
        for r, v in zip(results["bpp"], results[metric])
        if math.isfinite(r) and math.isfinite(v)
    )
    return [[r for r, _ in pairs], [v for _, v in pairs]]
