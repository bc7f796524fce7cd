"""``psic info``: the header, sizes and bpp of ``.psic`` files (no torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

from ..io import container
from .commands import Command
from .output import EXIT_OK

__all__ = ["COMMAND", "add_arguments", "describe_file", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", help=".psic file(s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def describe_file(path: Path) -> Dict[str, object]:
    """Header fields, sizes and bpp of a ``.psic`` file."""
    header = container.read(path)
    size = path.stat().st_size
    pixels = header.height * header.width
    return {
        "file": str(path),
        "format_version": header.format_version,
        "model": header.model_description(),
        "architecture": header.architecture,
        "quality": header.quality,
        "metric": header.metric,
        "checkpoint_sha256": header.checkpoint_sha256,
        "seed": header.seed,
        "random_init": header.seed is not None,
        "width": header.width,
        "height": header.height,
        "latent_shape": list(header.shape),
        "symbols_digest": (
            f"{header.symbols_digest:08x}"
            if header.symbols_digest is not None
            else "none (decodes unchecked)"
        ),
        "portable": header.portable,
        "string_bytes": [len(s) for latent in header.strings for s in latent],
        "file_bytes": size,
        "bpp": size * 8 / pixels,
        "payload_bpp": header.payload_size() * 8 / pixels,
    }


def run(args: argparse.Namespace) -> int:
    for name in args.input:
        info = describe_file(Path(name))
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{info['file']}:")
        for key, value in info.items():
            if key == "file" or value is None:
                continue
            if isinstance(value, float):
                value = f"{value:.4f}"
            print(f"  {key}: {value}")
    return EXIT_OK


COMMAND = Command("info", "print the header of .psic files", add_arguments, run)
