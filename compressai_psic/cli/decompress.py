"""``psic decompress``: ``.psic`` files to the protected image, the full one
(``--full``) or both (``--both``, one entropy decoding)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Sequence

from ..errors import CLIError
from ..io import container
from ..io.codec import decompress_header
from ..io.images import IMAGE_EXTENSIONS
from .arguments import (
    add_common_arguments,
    check_device_name,
    max_pixels_of,
    resolve_device,
)
from .commands import Command
from .jobs import PSIC_SUFFIX, check_jobs, check_targets, pair_files, run_jobs
from .models import ModelCache, spec_from_header
from .output import note

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", help=".psic file(s) or one folder")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="output image (format from its suffix), or folder when the input is a "
        "folder; default: next to the input as NAME_protected.png / NAME_full.png",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--full",
        action="store_true",
        help="decode the full image instead of the protected one",
    )
    which.add_argument(
        "--both",
        action="store_true",
        help="write OUT_protected and OUT_full (entropy decoding runs once)",
    )
    parser.add_argument(
        "--checkpoint",
        "-c",
        default=None,
        metavar="PATH",
        help="the weights file the .psic file was written with (checked by sha256)",
    )
    parser.add_argument(
        "--key-file",
        "-k",
        default=None,
        metavar="KEY",
        help="the publisher's key (psic keygen) for a keyed model's protected decode",
    )
    add_common_arguments(parser)


def _decoded_targets(
    target: Path, conditions: Sequence[str], name_each: bool
) -> List[Path]:
    """Output paths, one per condition: ``OUT_protected.png``, ``OUT_full.png``.

    A single decode goes to ``target`` itself when ``name_each`` is False (the
    user named it with ``-o``).
    """
    if len(conditions) == 1 and not name_each:
        return [target]
    return [
        target.with_name(f"{target.stem}_{condition}{target.suffix}")
        for condition in conditions
    ]


def run(args: argparse.Namespace) -> int:
    from ..io.images import save_image

    check_device_name(args.device)
    limit = max_pixels_of(args.max_pixels)
    key = None
    if args.key_file is not None:
        from ..models.keys import read_key_file

        key = read_key_file(args.key_file)  # before any file or model is read
    jobs, folder = pair_files(
        args.input,
        args.output,
        lambda p: p.suffix.lower() == PSIC_SUFFIX,
        ".png",
        "psic",
    )
    conditions = (
        ["protected", "full"] if args.both else ["full" if args.full else "protected"]
    )

    def targets_of(target: Path) -> List[Path]:
        # Default names say which image they hold, so that decoding photo.psic
        # next to photo.png never replaces the original.
        targets = _decoded_targets(target, conditions, args.output is None)
        if targets[0].suffix.lower() not in IMAGE_EXTENSIONS:
            raise CLIError(
                f"{targets[0]}: unknown image suffix; use one of "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            )
        return targets

    # Inputs and outputs first: a typo fails at once, not after model loading.
    check_jobs(jobs, folder, args.force, container.read, targets_of)
    device = resolve_device(args.device)
    models = ModelCache(device)

    def work(source: Path, target: Path) -> str:
        targets = targets_of(target)
        check_targets(targets, args.force)
        header = container.read(source)
        model, _ = models.get(spec_from_header(header, args.checkpoint))
        if header.symbols_digest is None:
            note(
                f"{source} has no symbol digest (format version 1): only the rANS "
                "decoder's end-of-string check can detect a decode that goes "
                "wrong on this machine"
            )
        images = decompress_header(model, header, conditions, max_pixels=limit, key=key)
        for image, path in zip(images, targets):
            save_image(image.cpu(), path)
        names = ", ".join(
            f"{path} ({condition})" for path, condition in zip(targets, conditions)
        )
        return f"{source} -> {names}: {header.width}x{header.height}"

    return run_jobs(jobs, work, folder, args.quiet, "decompress")


COMMAND = Command(
    "decompress",
    "decode .psic files (protected by default, --full, --both)",
    add_arguments,
    run,
)
