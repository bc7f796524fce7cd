"""``psic info``: the header, sizes and bpp of ``.psic`` files (no torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..io import container
from .commands import Command
from .jobs import check_input_file
from .output import EXIT_OK

__all__ = ["COMMAND", "add_arguments", "describe_file", "latent_shapes", "run"]

#: Size of ``y`` per unit of ``z`` in every CompressAI hyperprior model (``h_a``
#: downsamples twice by 2).
HYPER_FACTOR = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", help=".psic file(s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def latent_shapes(
    shape: Sequence[int], num_latents: int
) -> Dict[str, Optional[List[int]]]:
    """The spatial sizes of ``y`` and ``z`` from the ``shape`` a file stores.

    CompressAI's ``compress`` returns the size of the last latent it codes:
    ``y`` for a model with one string list (``bmshj2018-factorized``), ``z``
    for the hyperprior models (two lists), whose ``y`` is
    :data:`HYPER_FACTOR` times larger. Other layouts give ``None``.
    """
    if num_latents == 1:
        return {"latent_shape": list(shape), "hyper_latent_shape": None}
    if num_latents == 2:
        return {
            "latent_shape": [HYPER_FACTOR * s for s in shape],
            "hyper_latent_shape": list(shape),
        }
    return {"latent_shape": None, "hyper_latent_shape": None}


def describe_file(path: Path) -> Dict[str, object]:
    """Header fields, sizes and bpp of a ``.psic`` file.

    ``latent_shape`` is the spatial size of ``y``, ``hyper_latent_shape`` that
    of ``z`` (hyperprior models), ``coded_shape`` the ``shape`` the file stores
    for ``decompress`` (see :func:`latent_shapes`).
    """
    check_input_file(path)
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
        **latent_shapes(header.shape, len(header.strings)),
        "coded_shape": list(header.shape),
        "symbols_digest": (
            f"{header.symbols_digest:08x}"
            if header.symbols_digest is not None
            else "none (only the end-of-string check)"
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
