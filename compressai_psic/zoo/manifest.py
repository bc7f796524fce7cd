r"""Shielded versions of CompressAI's image zoo, with the same entry points.

.. code-block:: python

    from compressai_psic.zoo import bmshj2018_hyperprior

    net = bmshj2018_hyperprior(quality=3, metric="mse", pretrained=False)

``pretrained=True`` loads the base CompressAI weights through ``compressai.zoo``
(they download into torch hub's cache), then the PSIC trigger and synthesis
weights listed in the manifest ``zoo/manifest.json``: a local file shipped with
the package, or a URL downloaded into ``$COMPRESSAI_PSIC_CACHE`` (default
``~/.cache/compressai_psic``). Every file is checked against its sha256.

The manifest functions need neither torch nor CompressAI (both are imported when a
model is built), so the command line can check which weights exist before it
loads them. A malformed manifest raises :class:`ValueError` naming the file and
the entry; sha256 digests are compared without regard to case.

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from ..io.files import file_sha256 as sha256_file
from ..io.files import write_bytes

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "NoPublishedWeightsError",
    "bmshj2018_factorized",
    "bmshj2018_hyperprior",
    "cache_dir",
    "cheng2020_anchor",
    "cheng2020_attn",
    "image_models",
    "load_manifest",
    "load_named",
    "manifest_entry",
    "manifest_path",
    "update_manifest",
    "mbt2018",
    "mbt2018_mean",
    "named_codec_file",
    "published_weights_error",
    "weights_file",
    "zoo_dir",
]

METRICS = ("mse", "ms-ssim")
#: CompressAI's zoo names and the class each entry builds.
_BASE_CLASSES = {
    "bmshj2018-factorized": "FactorizedPrior",
    "bmshj2018-hyperprior": "ScaleHyperprior",
    "mbt2018-mean": "MeanScaleHyperprior",
    "mbt2018": "JointAutoregressiveHierarchicalPriors",
    "cheng2020-anchor": "Cheng2020Anchor",
    "cheng2020-attn": "Cheng2020Attention",
}
MAX_QUALITY = {
    name: (6 if name.startswith("cheng2020") else 8) for name in _BASE_CLASSES
}
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
    """``$COMPRESSAI_PSIC_MANIFEST`` or the packaged ``zoo/manifest.json``."""
    override = os.environ.get("COMPRESSAI_PSIC_MANIFEST")
    return Path(override) if override else zoo_dir() / "manifest.json"


def cache_dir() -> Path:
    """``$COMPRESSAI_PSIC_CACHE``, else ``$XDG_CACHE_HOME/compressai_psic``."""
    override = os.environ.get("COMPRESSAI_PSIC_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(base)) / "compressai_psic"


def load_manifest(path: Optional[os.PathLike] = None) -> List[Dict[str, Any]]:
    """The manifest's entries (an empty list when there is no manifest).

    Raises:
        ValueError: when the file is not JSON, not ``{"models": [...]}``, or an
            entry is not an object with string ``name``/``architecture``/``file``,
            a 64-digit hex ``sha256`` and integer ``quality`` (where present).
    """
    path = Path(path) if path is not None else manifest_path()
    if not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON manifest ({err})") from None
    entries = data.get("models", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected {{'models': [...]}}")
    for index, entry in enumerate(entries):
        _check_entry(entry, f"{path}: entry {index}")
        entry.setdefault("_root", str(path.parent))
    return entries


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
    if entry is None or not entry.get("architecture"):
        raise ValueError(
            f"unknown codec {name!r}; the manifest ({manifest_path()}) has "
            f"{_codec_names() or 'none'}"
        )
    return weights_file(entry, progress)


def _codec_names() -> List[str]:
    return [
        e["name"] for e in load_manifest() if e.get("architecture") and e.get("name")
    ]


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


def update_manifest(zoo: Path, entry: Dict[str, Any]) -> Optional[str]:
    """Adds or replaces (in place) the entry of the same name in
    ``zoo/manifest.json``, keeping every other entry; the file is written
    atomically. Returns the file of the replaced entry, if any."""
    path = zoo / "manifest.json"
    data: Dict[str, Any] = {"models": []}
    if path.is_file():
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a valid JSON manifest ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise ValueError(f"{path}: expected {{'models': [...]}}")
    replaced = None
    models = data["models"]
    for index, other in enumerate(models):
        if isinstance(other, dict) and other.get("name") == entry["name"]:
            replaced = other.get("file")
            models[index] = entry
            break
    else:
        models.append(entry)
    write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return replaced


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


def _base_pretrained(architecture: str, metric: str, quality: int, progress: bool):
    import compressai.zoo as cai_zoo
    from compressai.zoo.image import model_urls

    try:
        return cai_zoo.image_models[architecture](
            quality, metric=metric, pretrained=True, progress=progress
        )
    except Exception as err:
        url = model_urls.get(architecture, {}).get(metric, {}).get(quality)
        hub = Path(os.environ.get("TORCH_HOME", "~/.cache/torch")).expanduser()
        name = url.rsplit("/", 1)[-1] if url else "<file>"
        raise RuntimeError(
            f"Could not load CompressAI's pretrained {architecture} "
            f"(quality={quality}, metric={metric}): {err}. Download {url} and put it "
            f"at {hub / 'hub' / 'checkpoints' / name}"
        ) from err


def _load_entry_weights(model: nn.Module, weights: Path, entry: Dict[str, Any]):
    from ..utils import load_torch_file

    state = load_torch_file(weights)
    result = model.load_state_dict(state, strict=bool(entry.get("includes_base")))
    if not entry.get("includes_base"):
        groups = model.parameter_groups()
        trigger_keys = set(groups["trigger_encoder"] + groups["trigger_projections"])
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if k in trigger_keys]
        if unexpected or missing:
            raise RuntimeError(
                f"PSIC weights {entry.get('file')} do not fit {model.architecture}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    return model


def _load_model(
    architecture: str,
    metric: str,
    quality: int,
    pretrained: bool = False,
    progress: bool = True,
    **kwargs: Any,
) -> nn.Module:
    if metric not in METRICS:
        raise ValueError(f'Invalid metric "{metric}", choose from {METRICS}')
    top = MAX_QUALITY[architecture]
    if not isinstance(quality, int) or quality < 1 or quality > top:
        raise ValueError(f'Invalid quality "{quality}", should be between (1, {top})')
    from ..models import SHIELDED_CLASSES

    cls = SHIELDED_CLASSES[architecture]
    if not pretrained:
        from compressai.zoo.image import cfgs

        names = ("N",) if architecture.startswith("cheng2020") else ("N", "M")
        config = dict(zip(names, cfgs[architecture][quality]))
        config.update(kwargs)
        return cls(**config)
    entry = manifest_entry(architecture, metric, quality)
    if entry is None:
        raise NoPublishedWeightsError(
            f"No PSIC weights are published for {architecture} (quality={quality}, "
            f"metric={metric}) in {manifest_path()}. Train them with "
            f"`python -m compressai_psic.train --model {architecture}` (see README) "
            "and load the result with compressai_psic.load_checkpoint, or add a "
            "manifest entry "
            f"(file, sha256) and put the file in {cache_dir()}"
        )
    # The PSIC file first: it is small, and a missing one should not cost a
    # download of CompressAI's weights before failing.
    from ..models import shield
    from ..utils import load_torch_file

    weights = weights_file(entry, progress)
    if entry.get("includes_base"):
        model = cls.from_state_dict(load_torch_file(weights))
    else:
        model = shield(_base_pretrained(architecture, metric, quality, progress))
        _load_entry_weights(model, weights, entry)
    return model.eval()


def load_named(name: str, progress: bool = True) -> nn.Module:
    """Loads a named manifest model (e.g. the demo model) with its sha256 check."""
    from ..models import SHIELDED_CLASSES
    from ..utils import load_torch_file

    entry = manifest_entry(name=name)
    codecs = [e.get("name") for e in load_manifest() if e.get("architecture")]
    if entry is None:
        raise ValueError(f'Unknown model "{name}"; the manifest has codecs {codecs}')
    if entry.get("architecture") not in SHIELDED_CLASSES:
        raise ValueError(
            f'Manifest entry "{name}" is not a shielded codec (kind '
            f"{entry.get('kind', 'unknown')!r}); codecs: {codecs}"
        )
    cls = SHIELDED_CLASSES[entry["architecture"]]
    state = load_torch_file(weights_file(entry, progress))
    return cls.from_state_dict(state).eval()


def _make_entry(architecture: str) -> Callable[..., nn.Module]:
    top = MAX_QUALITY[architecture]

    def entry(
        quality: int,
        metric: str = "mse",
        pretrained: bool = False,
        progress: bool = True,
        **kwargs: Any,
    ) -> nn.Module:
        return _load_model(
            architecture, metric, quality, pretrained, progress, **kwargs
        )

    entry.__name__ = architecture.replace("-", "_")
    entry.__qualname__ = entry.__name__
    entry.__doc__ = (
        f"Shielded ``{architecture}`` (CompressAI's "
        f"``{_BASE_CLASSES[architecture]}`` with PSIC triggers).\n\n"
        "Args:\n"
        f"    quality (int): quality level (1: lowest, highest: {top})\n"
        "    metric (str): optimized metric, choose from ('mse', 'ms-ssim')\n"
        "    pretrained (bool): load CompressAI's weights and the PSIC weights of the\n"
        "        manifest (sha256-checked)\n"
        "    progress (bool): show download progress bars\n"
        "    **kwargs: constructor overrides (``N``, ``M``, ``trigger_dim``, ...)\n"
    )
    return entry


bmshj2018_factorized = _make_entry("bmshj2018-factorized")
bmshj2018_hyperprior = _make_entry("bmshj2018-hyperprior")
mbt2018_mean = _make_entry("mbt2018-mean")
mbt2018 = _make_entry("mbt2018")
cheng2020_anchor = _make_entry("cheng2020-anchor")
cheng2020_attn = _make_entry("cheng2020-attn")

#: Zoo name → entry function, as ``compressai.zoo.image_models``.
image_models: Dict[str, Callable[..., nn.Module]] = {
    "bmshj2018-factorized": bmshj2018_factorized,
    "bmshj2018-hyperprior": bmshj2018_hyperprior,
    "mbt2018-mean": mbt2018_mean,
    "mbt2018": mbt2018,
    "cheng2020-anchor": cheng2020_anchor,
    "cheng2020-attn": cheng2020_attn,
}
