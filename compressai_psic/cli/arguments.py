"""Options that several commands share: the model (``--model``, ``--arch``,
``--quality``, ``--metric``, ``--checkpoint``, ``--random-init``, ``--seed``),
the device, the pixel limit and ``--quiet``; with the checks and the context
that apply them."""

from __future__ import annotations

import argparse
import re
from typing import Optional

from ..errors import CLIError
from ..io import container
from ..options import MAX_DECODE_PIXELS

__all__ = [
    "DEFAULT_ARCH",
    "DEFAULT_METRIC",
    "DEFAULT_QUALITY",
    "add_common_arguments",
    "add_model_arguments",
    "check_device_name",
    "max_pixels_of",
    "resolve_device",
    "use_deterministic_cudnn",
]

DEFAULT_ARCH = "bmshj2018-hyperprior"
DEFAULT_QUALITY = 3
DEFAULT_METRIC = "mse"

_DEVICE_RE = re.compile(r"cpu|auto|cuda(:\d+)?")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="a named codec of the manifest, e.g. demo-psic (shipped with the "
        "package: works offline)",
    )
    group.add_argument(
        "--arch",
        "-a",
        default=None,
        help=f"architecture (zoo name; default {DEFAULT_ARCH}); with --checkpoint, "
        "the registered architecture when it cannot be guessed",
    )
    group.add_argument(
        "--quality",
        "-q",
        type=int,
        default=None,
        help=f"zoo quality, 1 (lowest) .. 8 (6 for cheng2020); default "
        f"{DEFAULT_QUALITY}",
    )
    group.add_argument(
        "--metric",
        "-m",
        choices=sorted(container.METRICS),
        default=None,
        help=f"zoo metric (default {DEFAULT_METRIC})",
    )
    group.add_argument(
        "--checkpoint",
        "-c",
        default=None,
        metavar="PATH",
        help="weights file (state dict or training checkpoint) instead of the zoo",
    )
    group.add_argument(
        "--random-init",
        action="store_true",
        help="random zoo weights (no download; to try the pipeline only)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of --random-init weights (stored in the file; default 0)",
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:N or auto. Encode and decode on the same "
        "kind of device: float differences in the hyperprior can desynchronise "
        "the entropy decoder",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="refuse images and files of more than N (padded) pixels; default "
        "4096x4096 (compressai_psic.options.MAX_DECODE_PIXELS), 0 for no limit",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar, no summary"
    )
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="replace existing output files (refused otherwise)",
    )


def check_device_name(name: str) -> None:
    if not _DEVICE_RE.fullmatch(name):
        raise CLIError(
            f"invalid --device {name!r}: allowed cpu, cuda, cuda:N (N a GPU index) "
            "or auto"
        )


def resolve_device(name: str) -> str:
    import torch

    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CLIError("--device cuda requested but CUDA is not available")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise CLIError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s), "
                f"allowed cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    if name.startswith("cuda"):
        use_deterministic_cudnn()
    return name


def use_deterministic_cudnn() -> None:
    """Makes this process's GPU convolutions repeatable: the same bits and
    condition then decode to the same pixels on every run.

    cuDNN's default kernels for the transposed convolutions of ``g_s`` may sum in
    any order: on an H200, five decodes of one latent differed by up to 2e-7 of
    the image's range (BENCHMARKS.md, "GPU"). The command line owns its process,
    so it sets the flags; a library user sets them the same way.
    """
    import torch

    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def max_pixels_of(value: Optional[int]) -> Optional[int]:
    """The decode limit ``--max-pixels`` asks for (``None``: no limit), passed to
    each decode as an argument; the default is the guard's."""
    if value is None:
        return MAX_DECODE_PIXELS
    if value < 0:
        raise CLIError(f"--max-pixels must be >= 0 (0: no limit), got {value}")
    return value or None
