"""Which model a command uses, built once per run.

The model is a named codec of the manifest (``--model``), a shielded zoo model
(``--arch``, ``--quality``, ``--metric``), a checkpoint file (``--checkpoint``),
or a seeded randomly initialised zoo model (``--random-init``). For decoding,
the file header names the model (:func:`spec_from_header`): named codecs are
found by the sha256 of their weights, and a ``--checkpoint`` must be the one the
file was written with.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Tuple

from ..errors import CLIError, one_line
from ..io import container
from ..io.codec import ModelSpec
from ..io.container import PSICFile
from ..io.files import file_sha256
from .arguments import DEFAULT_ARCH, DEFAULT_METRIC, DEFAULT_QUALITY
from .output import note

if TYPE_CHECKING:
    import torch

__all__ = [
    "ModelCache",
    "ModelSpec",
    "build_model",
    "checkpoint_sha256",
    "spec_from_args",
    "spec_from_header",
]


def checkpoint_sha256(path: Path) -> str:
    """sha256 of a weights file, hashed once per run (folders reuse it)."""
    stat = path.stat()
    return _cached_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Size and modification time are part of the key: a file rewritten in place
    # (same path, new weights) is hashed again.
    return file_sha256(path)


def build_model(
    spec: ModelSpec, device: str = "cpu"
) -> Tuple[torch.nn.Module, str | None]:
    """Builds a shielded model ready for ``compress``/``decompress``.

    Returns the model and, for checkpoints, the file's sha256 (else ``None``).

    The model is in eval mode, has run one forward pass (CompressAI's masked
    context convolutions mask their weights during the first forward) and has
    up-to-date CDF tables (``update(force=True)``).

    Raises:
        CLIError: for an unknown architecture, a bad quality or metric, a missing
            or unreadable checkpoint, or pretrained weights that are not available.
    """
    import torch

    from .. import zoo

    sha256 = None
    try:
        if spec.checkpoint is not None:
            from ..models import load_checkpoint

            sha256 = checkpoint_sha256(Path(spec.checkpoint))
            model = load_checkpoint(spec.checkpoint, architecture=spec.architecture)
        else:
            if spec.architecture not in zoo.image_models:
                raise CLIError(
                    f"unknown architecture {spec.architecture!r}; choose from "
                    f"{', '.join(zoo.image_models)} (or give --checkpoint)"
                )
            model = zoo.build_zoo_model(
                spec.architecture, spec.quality, spec.metric, spec.seed, progress=False
            )
    except CLIError:
        raise
    except zoo.NoPublishedWeightsError:
        message = zoo.published_weights_error(
            spec.architecture, spec.metric, spec.quality
        )
        raise CLIError(message or "no PSIC weights for this model") from None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CLIError(f"cannot build the model: {one_line(exc)}") from None

    model = model.eval()
    factor = int(getattr(model, "downsampling_factor", 64))
    with torch.no_grad():
        model(torch.zeros(1, 3, factor, factor))
    model.update(force=True)
    return model.to(device), sha256


class ModelCache:
    """Builds each model once per run (folders mix files of several models)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.models: Dict[ModelSpec, Tuple[torch.nn.Module, str | None]] = {}

    def get(self, spec: ModelSpec) -> Tuple[torch.nn.Module, str | None]:
        if spec not in self.models:
            self.models[spec] = build_model(spec, self.device)
            # After the build: a note must not precede the error of a failed one.
            if spec.random_init:
                note(
                    f"using randomly initialised {spec.architecture} weights (seed "
                    f"{spec.seed}): the output shows the pipeline, not trained "
                    "compression or protection"
                )
        return self.models[spec]


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    if args.model is not None:
        others = [
            flag
            for flag, value in (
                ("--checkpoint", args.checkpoint),
                ("--quality", args.quality),
                ("--metric", args.metric),
                ("--random-init", args.random_init or None),
            )
            if value is not None
        ]
        if others:
            raise CLIError(f"--model brings its own weights; drop {others[0]}")
        return ModelSpec(architecture=args.arch, checkpoint=_named_codec(args.model))
    if args.checkpoint is not None:
        if args.quality is not None or args.metric is not None:
            raise CLIError(
                "--quality and --metric select zoo weights; a --checkpoint brings "
                "its own"
            )
        if args.random_init:
            raise CLIError("--random-init and --checkpoint exclude each other")
        return ModelSpec(architecture=args.arch, checkpoint=Path(args.checkpoint))
    spec = ModelSpec(
        architecture=args.arch or DEFAULT_ARCH,
        quality=args.quality if args.quality is not None else DEFAULT_QUALITY,
        metric=args.metric or DEFAULT_METRIC,
        seed=args.seed if args.random_init else None,
    )
    if not spec.random_init:
        # Fail in a fraction of a second (no torch yet), naming what works offline.
        from .. import zoo

        if spec.architecture in zoo.MAX_QUALITY:
            message = _manifest_call(
                zoo.published_weights_error,
                spec.architecture,
                spec.metric,
                spec.quality,
            )
            if message is not None:
                raise CLIError(message)
    return spec


def _manifest_call(function: Callable, *args):
    """Runs a manifest look-up; a malformed manifest is a one-line user error."""
    try:
        return function(*args)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CLIError(one_line(exc)) from None


def _named_codec(name: str) -> Path:
    from .. import zoo

    return _manifest_call(zoo.named_codec_file, name, False)


def spec_from_header(header: PSICFile, checkpoint: str | None) -> ModelSpec:
    """The model a file names; a given ``checkpoint`` must be that model."""
    if checkpoint is not None:
        # Compare hashes before loading anything: a wrong checkpoint gets a clear
        # message naming both models, not a state-dict error.
        path = Path(checkpoint).resolve()
        container.check_compatible(
            header,
            header.architecture,
            header.quality if header.checkpoint_sha256 is None else None,
            header.metric if header.checkpoint_sha256 is None else None,
            checkpoint_sha256=checkpoint_sha256(path),
        )
        return ModelSpec(architecture=header.architecture, checkpoint=path)
    if header.checkpoint_sha256 is not None:
        from .. import zoo

        entry = _manifest_call(
            lambda: zoo.manifest_entry(sha256=header.checkpoint_sha256)
        )
        if entry is not None and entry.get("architecture") and entry.get("name"):
            # A named codec of the manifest (e.g. the shipped demo codec).
            path = _named_codec(entry["name"])
            return ModelSpec(architecture=header.architecture, checkpoint=path)
        raise CLIError(
            f"the file was written by {header.model_description()}; pass that "
            "checkpoint with --checkpoint PATH"
        )
    return ModelSpec(
        architecture=header.architecture,
        quality=header.quality,
        metric=header.metric,
        seed=header.seed,
    )
