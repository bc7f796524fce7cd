"""``psic compress``: images to ``.psic`` files."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..errors import CLIError, PSICFormatError, one_line
from ..io import container
from ..io.codec import compress_tensor
from ..io.images import IMAGE_EXTENSIONS, probe_image
from .arguments import (
    add_common_arguments,
    add_model_arguments,
    check_device_name,
    max_pixels_of,
    resolve_device,
)
from .commands import Command
from .jobs import PSIC_SUFFIX, check_jobs, check_targets, pair_files, run_jobs
from .models import ModelCache, spec_from_args
from .output import warn

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        nargs="+",
        help="image file(s) (PNG, JPEG, WebP, TIFF, BMP, GIF, PPM) or one folder",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="output .psic file, or folder when the input is a folder (default: "
        "next to the input)",
    )
    parser.add_argument(
        "--portable",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="entropy parameters in integer arithmetic, so that the file decodes "
        "the same on every machine (default: on for bmshj2018-*, demo-psic and "
        "psic-hy2018, where it costs 1-3%% of a decode; mbt2018-mean has it on "
        "request (7-10%%); the autoregressive mbt2018 and cheng2020-* have not)",
    )
    add_model_arguments(parser)
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.seed is not None and not 0 <= args.seed < 2**64:
        raise CLIError(f"--seed must be in 0..2**64-1, got {args.seed}")
    if args.seed != 0 and not args.random_init:
        raise CLIError("--seed applies to --random-init weights only")
    check_device_name(args.device)
    limit = max_pixels_of(args.max_pixels)
    jobs, folder = pair_files(
        args.input,
        args.output,
        lambda p: p.suffix.lower() in IMAGE_EXTENSIONS,
        PSIC_SUFFIX,
        "image",
    )
    # Inputs and outputs first: a typo fails at once, not after model loading.
    check_jobs(jobs, folder, args.force, probe_image)
    spec = spec_from_args(args)
    device = resolve_device(args.device)
    models = ModelCache(device)

    def work(source: Path, target: Path) -> str:
        check_targets([target], args.force)
        x, notices = _load_image_with_warnings(source)
        height, width = x.shape[-2:]
        if max(height, width) > container.MAX_IMAGE_SIDE:
            raise CLIError(
                f"{source}: {width}x{height} is larger than the format's "
                f"{container.MAX_IMAGE_SIDE}-pixel side limit"
            )
        model, sha256 = models.get(spec)
        _check_decodable(model, source, height, width, limit)
        try:
            portable = args.portable
            if portable is None:
                portable = bool(getattr(model, "portable_by_default", False))
            header = compress_tensor(model, x.to(device), spec, sha256, portable)
        except ValueError as exc:
            if isinstance(exc, PSICFormatError):
                raise
            raise CLIError(f"{source}: {one_line(exc)}") from None
        size = container.write(target, header)
        # Warnings about the image (an alpha channel dropped, …) only for files
        # written: a file refused above gets its error alone.
        for notice in notices:
            warn(notice)
        return (
            f"{source} -> {target}: {size} bytes, {size * 8 / (height * width):.4f} bpp"
        )

    return run_jobs(jobs, work, folder, args.quiet, "compress")


def _check_decodable(
    model: torch.nn.Module, source: Path, height: int, width: int, limit: Optional[int]
) -> None:
    """Refuses images whose file the decoder would refuse (pixel limit)."""
    from ..models import guard as decode_guard

    padded = decode_guard.latent_layout(model).image_size(
        decode_guard.expected_shape(model, height, width)
    )
    if limit is not None and padded[0] * padded[1] > limit:
        raise CLIError(
            f"{source}: {width}x{height} pads to {padded[1]}x{padded[0]} = "
            f"{padded[0] * padded[1]} pixels, over the limit of {limit} (raise it "
            "with --max-pixels; decoders refuse files over their own limit)"
        )


def _load_image_with_warnings(path: Path) -> Tuple[Tensor, List[str]]:
    """The image and the warnings its loading gave, each on one line."""
    from ..io.images import load_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_image(path)
    return x, [" ".join(str(warning.message).split()) for warning in caught]


COMMAND = Command("compress", "encode images to .psic files", add_arguments, run)
