r"""Rate–distortion evaluation of both decode paths of a shielded model.

One bitstream per image, decoded to every requested condition (by default the
**full** and the **protected** image). For each image this measures:

- the rate in bits per pixel from real bytes: the size of the ``.psic`` file
  (:mod:`compressai_psic.io.container`) that ``psic compress`` would write, header
  and checksum included, or the sum of the entropy-coded string lengths when the
  container module cannot describe the model;
- PSNR and MS-SSIM of each path on 8-bit RGB values (both images rounded to
  integers in [0, 255], as CompressAI's ``eval_model`` does);
- the encode time (``model.compress``), the decode time of each path on its own
  (``model.decompress``) and the time of decoding all paths at once
  (``model.decompress_multi``: one entropy decode).

:func:`rd_json` turns the results of one or more rate points into the JSON of
``python -m compressai.utils.eval_model`` (``{"name", "description", "results":
{"psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"}}``, one value
per rate point), one file per path, so that ``python -m compressai.utils.plot``
draws them beside CompressAI's published curves.

MS-SSIM with its standard five scales and 11×11 window needs images whose
shorter side is at least 161 pixels (``pytorch_msssim`` refuses smaller ones). For
smaller images the value is ``NaN`` and means are taken over the images that
have one; ``ms_ssim_images`` in the results says how many did.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..models.conditions import CONDITION_NAMES
from ..padding import crop_padding, pad_to_multiple

__all__ = [
    "BPP_SOURCES",
    "DEFAULT_CONDITIONS",
    "MS_SSIM_MIN_SIDE",
    "RESULT_KEYS",
    "collect_images",
    "compute_metrics",
    "condition_label",
    "evaluate_dataset",
    "evaluate_image",
    "ms_ssim_rgb",
    "parse_condition",
    "path_results",
    "psnr_rgb",
    "rd_json",
]

#: The paths decoded by default, in the order of the output files.
DEFAULT_CONDITIONS = ("full", "protected")

#: Keys of ``results`` in CompressAI's ``eval_model`` JSON, in its order.
RESULT_KEYS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time")

#: Where the rate comes from: the ``.psic`` file bytes, the entropy-coded strings
#: alone, or the likelihoods of a forward pass (no entropy coding).
BPP_SOURCES = {
    "psic-file": "bpp from .psic file bytes",
    "strings": "bpp from entropy-coded string bytes",
    "entropy-estimation": "bpp estimated from likelihoods",
}

#: Shortest image side accepted by ``pytorch_msssim.ms_ssim`` with its default
#: 11-pixel window and 5 scales: the side must exceed (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161

_MAX_VALUE = 255.0

Condition = Union[str, float]


def parse_condition(text: Union[str, float]) -> Condition:
    """``"full"``/``"protected"`` or a β in [0, 1] given as a number or a string.

    Raises:
        ValueError: for anything else, naming the allowed values.
    """
    if isinstance(text, str) and text in CONDITION_NAMES:
        return text
    try:
        beta = float(text)
    except (TypeError, ValueError):
        beta = float("nan")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(
            f"Invalid condition {text!r}: use one of {sorted(CONDITION_NAMES)} or a "
            "beta in [0, 1]"
        )
    return beta


def condition_label(condition: Condition) -> str:
    """File-name-safe label of a condition: ``full``, ``protected``, ``beta0.5``."""
    if isinstance(condition, str):
        return condition
    return f"beta{float(condition):g}"


def collect_images(root: Union[str, os.PathLike]) -> List[Path]:
    """Image files under ``root`` (recursively), sorted, as CompressAI does."""
    from ..io.images import IMAGE_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    )


# ------------------------------------------------------------------ metrics


def _to_8bit(x: Tensor) -> Tensor:
    return (x.detach().float() * _MAX_VALUE).clamp(0.0, _MAX_VALUE).round()


def psnr_rgb(original: Tensor, reconstruction: Tensor) -> float:
    """PSNR in dB of two images in [0, 1], on their 8-bit values."""
    mse = (_to_8bit(original) - _to_8bit(reconstruction)).pow(2).mean().item()
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(_MAX_VALUE) - 10.0 * math.log10(mse)


def ms_ssim_rgb(original: Tensor, reconstruction: Tensor) -> float:
    """MS-SSIM of two images in [0, 1] on their 8-bit values.

    ``NaN`` when the shorter side is under :data:`MS_SSIM_MIN_SIDE` pixels: the
    standard five-scale MS-SSIM is not defined there, and a variant with fewer
    scales would not be comparable with published curves.
    """
    from pytorch_msssim import ms_ssim

    if min(original.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return math.nan
    value = ms_ssim(_to_8bit(original), _to_8bit(reconstruction), data_range=_MAX_VALUE)
    return float(value.item())


def compute_metrics(original: Tensor, reconstruction: Tensor) -> Dict[str, float]:
    """``{"psnr-rgb", "ms-ssim-rgb"}`` of one reconstruction."""
    return {
        "psnr-rgb": psnr_rgb(original, reconstruction),
        "ms-ssim-rgb": ms_ssim_rgb(original, reconstruction),
    }


# --------------------------------------------------------------- one image


class _Timer:
    """Wall-clock timer that waits for queued CUDA work at start and stop."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> _Timer:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


def _file_size(
    model: nn.Module,
    out: Mapping[str, Any],
    height: int,
    width: int,
    identity: Optional[Mapping[str, Any]],
) -> Optional[int]:
    """Bytes of the ``.psic`` file for ``out``, or ``None`` if it cannot be built."""
    from ..io.codec import header_from_compressed
    from ..io.container import dumps

    identity = dict(identity or {})
    architecture = identity.pop("architecture", None) or getattr(
        model, "architecture", None
    )
    try:
        header = header_from_compressed(
            out, height, width, architecture=str(architecture), **identity
        )
        return len(dumps(header))
    except (ValueError, TypeError):
        # e.g. an automatically registered class whose name the format refuses
        return None


@torch.no_grad()
def evaluate_image(
    model: nn.Module,
    x: Tensor,
    conditions: Sequence[Condition] = DEFAULT_CONDITIONS,
    entropy_estimation: bool = False,
    identity: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Encodes one image and decodes it to every condition.

    Args:
        model: a shielded model in eval mode with up-to-date CDFs
            (``update(force=True)``; mbt2018 and cheng2020 after one forward)
        x: one image, ``(1, 3, H, W)`` in [0, 1], on the model's device
        conditions: the paths to decode (names or βs)
        entropy_estimation: estimate the rate from the likelihoods of a forward
            pass instead of entropy coding (times are then half the forward time
            each, as CompressAI reports them)
        identity: model identity stored in the ``.psic`` header (``architecture``,
            ``quality``, ``metric``, ``checkpoint_sha256``, ``seed``); it changes
            the header size by a few bytes only

    Returns:
        ``{"height", "width", "bytes", "bpp", "bpp_source", "encoding_time",
        "joint_decoding_time", "paths": {label: {"psnr-rgb", "ms-ssim-rgb",
        "decoding_time", "max_abs_diff_joint"}}}``, where
        ``max_abs_diff_joint`` compares the decode of that path alone with its
        image from the joint decode (``None`` with ``entropy_estimation``)
    """
    if x.dim() != 4 or x.size(0) != 1 or x.size(1) != 3:
        raise ValueError(f"Expected one (1, 3, H, W) image, got {tuple(x.shape)}")
    conditions = [parse_condition(c) for c in conditions]
    if not conditions:
        raise ValueError("At least one condition is required")
    labels = [condition_label(c) for c in conditions]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Conditions must be distinct, got {labels}")
    device = x.device
    height, width = x.shape[-2:]
    num_pixels = height * width
    x_padded, padding = pad_to_multiple(x, int(model.downsampling_factor))

    if entropy_estimation:
        with _Timer(device) as timer:
            out = model.forward_multi(x_padded, conditions)
        bits = sum(
            torch.log2(likelihoods).sum().neg().item()
            for likelihoods in out["likelihoods"].values()
        )
        half = timer.seconds / 2.0
        result: Dict[str, Any] = {
            "height": int(height),
            "width": int(width),
            "bytes": bits / 8.0,
            "bpp": bits / num_pixels,
            "bpp_source": "entropy-estimation",
            "encoding_time": half,
            "joint_decoding_time": half,
            "paths": {},
        }
        for label, x_hat in zip(labels, out["x_hat"]):
            metrics = compute_metrics(x, crop_padding(x_hat.clamp(0, 1), padding))
            metrics.update(decoding_time=half, max_abs_diff_joint=None)
            result["paths"][label] = metrics
        return result

    with _Timer(device) as timer:
        encoded = model.compress(x_padded)
    encoding_time = timer.seconds
    strings, shape = encoded["strings"], encoded["shape"]

    size = _file_size(model, encoded, height, width, identity)
    source = "psic-file"
    if size is None:
        size = sum(len(s) for latent in strings for s in latent)
        source = "strings"

    with _Timer(device) as timer:
        joint = model.decompress_multi(strings, shape, conditions=conditions)["x_hat"]
    result = {
        "height": int(height),
        "width": int(width),
        "bytes": size,
        "bpp": size * 8.0 / num_pixels,
        "bpp_source": source,
        "encoding_time": encoding_time,
        "joint_decoding_time": timer.seconds,
        "paths": {},
    }
    for condition, label, x_hat_joint in zip(conditions, labels, joint):
        with _Timer(device) as timer:
            x_hat = model.decompress(strings, shape, condition=condition)["x_hat"]
        x_hat_joint = crop_padding(x_hat_joint, padding)
        x_hat = crop_padding(x_hat, padding)
        metrics = compute_metrics(x, x_hat_joint)
        metrics["decoding_time"] = timer.seconds
        metrics["max_abs_diff_joint"] = (x_hat - x_hat_joint).abs().max().item()
        result["paths"][label] = metrics
    return result


def path_results(image_result: Mapping[str, Any], label: str) -> Dict[str, float]:
    """The five CompressAI result values of one path of :func:`evaluate_image`."""
    path = image_result["paths"][label]
    return {
        "psnr-rgb": path["psnr-rgb"],
        "ms-ssim-rgb": path["ms-ssim-rgb"],
        "bpp": image_result["bpp"],
        "encoding_time": image_result["encoding_time"],
        "decoding_time": path["decoding_time"],
    }


# ------------------------------------------------------------------ dataset


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def evaluate_dataset(
    model: nn.Module,
    paths: Sequence[Union[str, os.PathLike]],
    conditions: Sequence[Condition] = DEFAULT_CONDITIONS,
    entropy_estimation: bool = False,
    identity: Optional[Mapping[str, Any]] = None,
    root: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    description: str = "",
) -> Dict[str, Any]:
    """Runs :func:`evaluate_image` on every image and averages over images.

    Images are read with :func:`compressai_psic.io.images.load_image` and moved to
    the model's device. Means are plain means over images, as CompressAI's
    ``eval_model`` computes them, except that MS-SSIM averages only the images
    large enough to have one.

    Returns:
        ``{"conditions": [labels], "num_images", "bpp_source", "ms_ssim_images",
        "joint_decoding_time", "results": {label: {RESULT_KEYS: mean}},
        "per_image": [{"source", **evaluate_image result}]}``; ``source`` is the
        path relative to ``root`` when given
    """
    from tqdm import tqdm

    from ..io.images import load_image

    if not paths:
        raise ValueError("No images to evaluate")
    labels = [condition_label(parse_condition(c)) for c in conditions]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    per_image = []
    for path in tqdm(paths, desc=description or "images", disable=not progress):
        x = load_image(path).to(device)
        result = evaluate_image(model, x, conditions, entropy_estimation, identity)
        source = Path(path)
        if root is not None:
            source = source.relative_to(root)
        per_image.append({"source": source.as_posix(), **result})

    results = {
        label: {
            key: _mean(path_results(r, label)[key] for r in per_image)
            for key in RESULT_KEYS
        }
        for label in labels
    }
    sources = {r["bpp_source"] for r in per_image}
    return {
        "conditions": labels,
        "num_images": len(per_image),
        "bpp_source": sources.pop() if len(sources) == 1 else "mixed",
        "ms_ssim_images": sum(
            not math.isnan(r["paths"][labels[0]]["ms-ssim-rgb"]) for r in per_image
        ),
        "joint_decoding_time": _mean(r["joint_decoding_time"] for r in per_image),
        "results": results,
        "per_image": per_image,
    }


def rd_json(
    name: str,
    runs: Sequence[Mapping[str, Any]],
    label: str,
    run_names: Optional[Sequence[str]] = None,
    entropy_coder: str = "ans",
    per_image: bool = False,
    note: str = "",
) -> Dict[str, Any]:
    """CompressAI ``eval_model`` JSON of one path over several rate points.

    Args:
        name: curve name (e.g. ``"psic-bmshj2018-hyperprior-mse-full"``)
        runs: :func:`evaluate_dataset` results, one per rate point, in order
        label: the path (``"full"``, ``"protected"``, ...)
        run_names: one name per rate point (e.g. ``"q3"`` or a checkpoint file)
        entropy_coder: CompressAI entropy coder used, for the description
        per_image: add ``per_image``: per rate point, a list of
            ``{"source", "results"}`` with the five values of each image
        note: appended to the description (e.g. ``"random-init weights"``)

    ``results`` holds exactly CompressAI's five keys; the extra top-level keys
    (``condition``, ``runs``, ``num_images``, ``ms_ssim_images``,
    ``joint_decoding_time``, ``bpp_source``) are ignored by its plot tool.
    """
    if not runs:
        raise ValueError("At least one rate point is required")
    sources = {run["bpp_source"] for run in runs}
    source = sources.pop() if len(sources) == 1 else "mixed"
    rate = BPP_SOURCES.get(source, "bpp from mixed sources")
    how = "entropy estimation" if source == "entropy-estimation" else entropy_coder
    data: Dict[str, Any] = {
        "name": name,
        "description": f"Inference ({how}, {rate}, {label} decode"
        + (f", {note})" if note else ")"),
        "results": {
            key: [run["results"][label][key] for run in runs] for key in RESULT_KEYS
        },
        "condition": label,
        "runs": list(run_names) if run_names is not None else list(range(len(runs))),
        "num_images": [run["num_images"] for run in runs],
        "ms_ssim_images": [run["ms_ssim_images"] for run in runs],
        "joint_decoding_time": [run["joint_decoding_time"] for run in runs],
        "bpp_source": source,
    }
    if per_image:
        data["per_image"] = [
            [
                {"source": image["source"], "results": path_results(image, label)}
                for image in run["per_image"]
            ]
            for run in runs
        ]
    return data
