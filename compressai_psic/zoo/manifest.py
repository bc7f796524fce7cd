r"""The zoo manifest (``zoo/manifest.json``) and the weights files it lists.

The manifest lists every PSIC weights file: zoo points (architecture, metric,
quality), named codecs (e.g. the shipped ``demo-psic``) and VLPs. A file is
found next to the manifest (shipped with the package) or in the cache
(``$COMPRESSAI_PSIC_CACHE``, default ``~/.cache/compressai_psic``), or
downloaded there from the entry's URL; every file is checked against its
sha256, compared without regard to case.

Nothing here needs torch or CompressAI (only a download imports ``torch.hub``),
so the command line can check which weights exist before it loads them. A
malformed manifest raises :class:`ValueError` naming the file and the entry.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..io.files import file_sha256 as sha256_file
from ..io.files import write_bytes

__all__ = [
    "DEMO_CODEC",
    "NoPublishedWeightsError",
    "add_manifest_entry",
    "cache_dir",
    "codec_names",
    "is_codec",
    "load_manifest",
    "manifest_entry",
    "manifest_path",
    "manifest_paths",
    "named_codec_file",
    "published_weights_error",
    "same_name",
    "update_manifest",
    "weights_file",
    "zoo_dir",
]

#: Name of the codec shipped with the package (``zoo/DEMO_PSIC.md``).
DEMO_CODEC = "demo-psic"
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


class NoPublishedWeightsError(RuntimeError):
    """A zoo point (architecture, quality, metric) has no PSIC weights."""


def zoo_dir() -> Path:
    """Folder of the model cards, manifest and shipped checkpoints."""
    try:
        from importlib.resources import files

        path = Path(str(files("compressai_psic.zoo_files")))
        if (path / "manifest.json").is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "zoo"


def manifest_path() -> Path:
    """The first manifest read: ``$COMPRESSAI_PSIC_MANIFEST`` (its first file)
    or the packaged ``zoo/manifest.json``; new entries are written here."""
    return manifest_paths()[0]


def manifest_paths() -> List[Path]:
    """Every manifest read, in order; the first entry that matches wins.

    ``$COMPRESSAI_PSIC_MANIFEST`` (one file, or several separated by
    ``os.pathsep``) comes first and *adds to* the packaged
    ``zoo/manifest.json``, which comes last: your entries are found, and so are
    the shipped models, unless yours use the same names or zoo points. A
    manifest with ``"include_shipped": false`` leaves the packaged one out.
    """
    override = os.environ.get("COMPRESSAI_PSIC_MANIFEST", "")
    paths = [Path(p) for p in override.split(os.pathsep) if p]
    shipped = zoo_dir() / "manifest.json"
    if any(p.resolve() == shipped.resolve() for p in paths):
        return paths
    for path in paths:
        if path.is_file() and _read_manifest(path).get("include_shipped") is False:
            return paths
    return paths + [shipped]


def cache_dir() -> Path:
    """``$COMPRESSAI_PSIC_CACHE``, else ``$XDG_CACHE_HOME/compressai_psic``."""
    override = os.environ.get("COMPRESSAI_PSIC_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(base)) / "compressai_psic"


def load_manifest(path: Optional[os.PathLike] = None) -> List[Dict[str, Any]]:
    """The entries of ``path``, or of every manifest of :func:`manifest_paths`
    (yours first), as one list; an empty list when there is no manifest.

    Raises:
        ValueError: when the file is not JSON, not ``{"models": [...]}``, or an
            entry is not an object with string ``name``/``architecture``/``file``,
            a 64-digit hex ``sha256`` and integer ``quality`` (where present).
    """
    if path is None:
        return [entry for p in manifest_paths() for entry in load_manifest(p)]
    path = Path(path)
    if not path.is_file():
        return []
    entries = _read_manifest(path)["models"]
    for index, entry in enumerate(entries):
        _check_entry(entry, f"{path}: entry {index}")
        entry.setdefault("_root", str(path.parent))
    return entries


def _read_manifest(path: Path) -> Dict[str, Any]:
    """The JSON object of a manifest file, with a list ``models`` (default [])."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON manifest ({err})") from None
    if not isinstance(data, dict) or not isinstance(
        data.setdefault("models", []), list
    ):
        raise ValueError(f"{path}: expected {{'models': [...]}}")
    return data


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}, not an object")
    for key in ("name", "architecture", "file", "url", "metric", "kind"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {key!r} must be a string, got {value!r}")
    sha256 = entry.get("sha256")
    if sha256 is not None and not (
        isinstance(sha256, str) and _SHA256_RE.fullmatch(sha256)
    ):
        raise ValueError(f"{where}: 'sha256' must be 64 hex digits, got {sha256!r}")
    quality = entry.get("quality")
    if quality is not None and (
        not isinstance(quality, int) or isinstance(quality, bool)
    ):
        raise ValueError(f"{where}: 'quality' must be an integer, got {quality!r}")


def manifest_entry(
    architecture: Optional[str] = None,
    metric: Optional[str] = None,
    quality: Optional[int] = None,
    name: Optional[str] = None,
    sha256: Optional[str] = None,
) -> Optional[Dict[str, Any]]:
    """The manifest entry for a zoo point, a named model or a weights sha256."""
    for entry in load_manifest():
        if sha256 is not None:
            if str(entry.get("sha256", "")).lower() == sha256.lower():
                return entry
        elif name is not None:
            if entry.get("name") == name:
                return entry
        elif (
            entry.get("architecture") == architecture
            and entry.get("metric") == metric
            and entry.get("quality") == quality
        ):
            return entry
    return None


def named_codec_file(name: str, progress: bool = True) -> Path:
    """The sha256-checked weights file of a named codec of the manifest (e.g.
    ``demo-psic``); downloaded first when the entry gives a URL.

    Raises:
        ValueError: for a name the manifest does not list as a codec.
        RuntimeError: when the file is missing or its sha256 differs.
    """
    entry = manifest_entry(name=name)
    if entry is None or not is_codec(entry):
        raise ValueError(
            f"unknown codec {name!r}; the manifest ({manifest_path()}) has "
            f"{_codec_names() or 'none'}"
        )
    return weights_file(entry, progress)


def is_codec(entry: Dict[str, Any]) -> bool:
    """Whether a manifest entry is a codec (not a VLP, whose entries may name an
    ``architecture`` too)."""
    return bool(entry.get("architecture")) and entry.get("kind") != "vlp"


def codec_names() -> List[str]:
    """Names of the codecs of the manifests (VLPs left out)."""
    return [e["name"] for e in load_manifest() if is_codec(e) and e.get("name")]


_codec_names = codec_names


def published_weights_error(
    architecture: str, metric: str, quality: int
) -> Optional[str]:
    """``None`` when the manifest lists PSIC weights for this zoo point, else the
    message saying which options work offline."""
    if manifest_entry(architecture, metric, quality) is not None:
        return None
    codecs = _codec_names()
    offline = (
        f"the shipped demo codec (--model {DEMO_CODEC}, 64x64 scenes)"
        if DEMO_CODEC in codecs
        else "a codec of the manifest (--model NAME)"
        if codecs
        else None
    )
    options = [o for o in (offline,) if o] + [
        "your own trained weights (--checkpoint PATH)",
        "random weights to try the pipeline (--random-init)",
    ]
    return (
        f"no PSIC weights are published for {architecture} (quality {quality}, "
        f"metric {metric}) in {manifest_path()}; offline, use " + ", or ".join(options)
    )


def same_name(existing: Dict[str, Any], entry: Dict[str, Any]) -> bool:
    """Whether two manifest entries have the same name (the default match of
    :func:`add_manifest_entry`)."""
    return existing.get("name") is not None and existing.get("name") == entry["name"]


def add_manifest_entry(
    path: os.PathLike,
    entry: Dict[str, Any],
    same: Callable[[Dict[str, Any], Dict[str, Any]], bool] = same_name,
) -> Optional[Dict[str, Any]]:
    """Adds ``entry`` to the manifest file ``path``, replacing in place the first
    entry that ``same(existing, entry)`` matches; every other entry and top-level
    key is kept. The file (and its folder) is created when missing, and written
    atomically. Returns the replaced entry, if any.

    Raises:
        ValueError: when the file is not a JSON manifest ``{"models": [...]}``.
    """
    path = Path(path)
    data = _read_manifest(path) if path.is_file() else {"models": []}
    models = data["models"]
    replaced = None
    for index, existing in enumerate(models):
        if isinstance(existing, dict) and same(existing, entry):
            replaced, models[index] = existing, entry
            break
    else:
        models.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return replaced


def update_manifest(zoo: os.PathLike, entry: Dict[str, Any]) -> Optional[str]:
    """Adds or replaces (in place) the entry of the same name in
    ``zoo/manifest.json``, keeping every other entry; the file is written
    atomically. Returns the file of the replaced entry, if any."""
    replaced = add_manifest_entry(Path(zoo) / "manifest.json", entry)
    return None if replaced is None else replaced.get("file")


def weights_file(entry: Dict[str, Any], progress: bool = True) -> Path:
    """Local path of an entry's weights, downloaded and verified if needed."""
    sha256 = entry.get("sha256")
    if not sha256:
        raise ValueError(f"Manifest entry {entry.get('file')!r} has no sha256")
    candidates = []
    if entry.get("file"):
        candidates.append(Path(entry["_root"]) / entry["file"])
        candidates.append(cache_dir() / Path(entry["file"]).name)
    for path in candidates:
        if path.is_file():
            actual = sha256_file(path)
            if actual != sha256.lower():
                raise RuntimeError(
                    f"{path}: sha256 {actual} does not match the manifest ({sha256}); "
                    "delete the file and download it again"
                )
            return path
    url = entry.get("url")
    target = cache_dir() / (Path(entry.get("file") or url or "weights").name)
    if not url:
        raise RuntimeError(
            f"PSIC weights {entry.get('file')!r} are not available locally and the "
            f"manifest gives no URL; put the file at {target}"
        )
    from torch.hub import download_url_to_file

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(url, str(target), hash_prefix=None, progress=progress)
    except Exception as err:  # offline, HTTP errors, ...
        raise RuntimeError(
            f"Could not download PSIC weights from {url} ({err}). Download the file "
            f"by hand and put it at {target} (sha256 {sha256})"
        ) from err
    actual = sha256_file(target)
    if actual != sha256.lower():
        target.unlink()
        raise RuntimeError(f"Downloaded {url}: sha256 {actual} != {sha256}; removed")
    return target
