r"""The ``psic`` command line: compress images to ``.psic`` files and decode them.

.. code-block:: none

    psic compress photo.png -o photo.psic --model demo-psic
    psic decompress photo.psic -o photo.png            # protected image (default)
    psic decompress photo.psic -o photo.png --full     # full image
    psic decompress photo.psic -o photo.png --both     # both, one entropy decoding
    psic info photo.psic
    psic compress photos/ -o encoded/ --model demo-psic   # every image of a folder

The model is a named codec of the manifest (``--model``, e.g. the shipped
``demo-psic``), a shielded zoo model (``--arch``, ``--quality``, ``--metric``), a
checkpoint file (``--checkpoint``, optionally with ``--arch``), or, to try the
pipeline without trained weights, a randomly initialised zoo model
(``--random-init``, seeded so that the decoder rebuilds the same weights). The
file header names the model, and ``decompress`` rebuilds it (finding the weights
of named codecs by their sha256), or refuses a ``--checkpoint`` that is not the
one the file was written with.

Every user error (missing or malformed file, unknown model, mismatch, image too
large, corrupted bitstream) is reported as one line ``psic: error: ...`` on
stderr with exit status 2. Decoding validates the file against the model before
any entropy decoding (:mod:`compressai_psic.models.guard`), so crafted files
cannot crash, hang or exhaust the decoder.

torch and CompressAI are imported only by the commands that code images:
``psic --help`` and ``psic info`` start in a fraction of a second.

Subcommands are entries of :data:`COMMANDS`; adding one (e.g. ``demo``) takes one
:class:`Command` and one :func:`register_command` call.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

from ..errors import CLIError, PSICFormatError, one_line
from ..io import container
from ..io.codec import ModelSpec, compress_tensor, decompress_header
from ..io.container import PSICFile
from ..io.files import file_sha256
from ..io.images import IMAGE_EXTENSIONS, ImageLoadError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = [
    "CLIError",
    "COMMANDS",
    "Command",
    "ModelSpec",
    "build_model",
    "build_parser",
    "compress_tensor",
    "decompress_header",
    "describe_file",
    "main",
    "register_command",
]

PROG = "psic"
EXIT_OK = 0
EXIT_ERROR = 2
DEFAULT_ARCH = "bmshj2018-hyperprior"
DEFAULT_QUALITY = 3
DEFAULT_METRIC = "mse"
PSIC_SUFFIX = ".psic"


# --------------------------------------------------------------------- models


def _checkpoint_sha256(path: Path) -> str:
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

            sha256 = _checkpoint_sha256(Path(spec.checkpoint))
            model = load_checkpoint(spec.checkpoint, architecture=spec.architecture)
        else:
            if spec.architecture not in zoo.image_models:
                raise CLIError(
                    f"unknown architecture {spec.architecture!r}; choose from "
                    f"{', '.join(zoo.image_models)} (or give --checkpoint)"
                )
            entry = zoo.image_models[spec.architecture]
            if spec.random_init:
                # Seeded in a forked RNG so the decoder rebuilds the same weights
                # without disturbing the caller's random state.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(spec.seed)
                    model = entry(spec.quality, metric=spec.metric, pretrained=False)
            else:
                model = entry(
                    spec.quality, metric=spec.metric, pretrained=True, progress=False
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


class _ModelCache:
    """Builds each model once per run (folders mix files of several models)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.models: Dict[ModelSpec, Tuple[torch.nn.Module, str | None]] = {}

    def get(self, spec: ModelSpec) -> Tuple[torch.nn.Module, str | None]:
        if spec not in self.models:
            self.models[spec] = build_model(spec, self.device)
            # After the build: a note must not precede the error of a failed one.
            if spec.random_init:
                _note(
                    f"using randomly initialised {spec.architecture} weights (seed "
                    f"{spec.seed}): the output shows the pipeline, not trained "
                    "compression or protection"
                )
        return self.models[spec]


def _spec_from_args(args: argparse.Namespace) -> ModelSpec:
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


def _spec_from_header(header: PSICFile, checkpoint: str | None) -> ModelSpec:
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
            checkpoint_sha256=_checkpoint_sha256(path),
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


# ----------------------------------------------------------------- helpers


def _note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


_DEVICE_RE = re.compile(r"cpu|auto|cuda(:\d+)?")


def _check_device_name(name: str) -> None:
    if not _DEVICE_RE.fullmatch(name):
        raise CLIError(
            f"invalid --device {name!r}: allowed cpu, cuda, cuda:N (N a GPU index) "
            "or auto"
        )


def _resolve_device(name: str) -> str:
    import torch

    _check_device_name(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CLIError("--device cuda requested but CUDA is not available")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise CLIError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s), "
                f"allowed cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    return name


def _jobs(
    inputs: Sequence[str],
    output: str | None,
    accept: Callable[[Path], bool],
    suffix: str,
    kind: str,
) -> Tuple[List[Tuple[Path, Path]], bool]:
    """Pairs of (input file, output path) and whether a folder was given.

    Without ``-o`` the output goes next to the input, named with ``suffix``; when
    ``-o`` is an existing folder, outputs go into it with the same names.
    """
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        folder = Path(inputs[0])
        files = sorted(p for p in folder.iterdir() if p.is_file() and accept(p))
        if not files:
            raise CLIError(f"{folder}: no {kind} files in this folder")
        out_dir = Path(output) if output is not None else folder
        if out_dir.exists() and not out_dir.is_dir():
            raise CLIError(f"{out_dir}: not a folder (the input is a folder)")
        targets = [out_dir / (p.stem + suffix) for p in files]
        seen: Dict[Path, Path] = {}
        for source, target in zip(files, targets):
            if target in seen:
                raise CLIError(
                    f"{seen[target].name} and {source.name} would both be written "
                    f"to {target}"
                )
            seen[target] = source
        return list(zip(files, targets)), True
    for name in inputs:
        if Path(name).is_dir():
            raise CLIError(f"{name}: give one folder on its own, or files")
    into = Path(output) if output is not None and Path(output).is_dir() else None
    if output is not None and into is None and len(inputs) > 1:
        raise CLIError("-o names one output file: give one input, or a folder as -o")
    pairs = []
    for name in inputs:
        source = Path(name)
        if into is not None:
            target = into / (source.stem + suffix)
        elif output is not None:
            target = Path(output)
        else:
            target = source.with_suffix(suffix)
        if target.resolve() == source.resolve():
            raise CLIError(f"{source}: the output would overwrite the input")
        pairs.append((source, target))
    return pairs, False


def _check_targets(targets: Sequence[Path], may_replace: bool) -> None:
    """Default outputs (no ``-o``) never replace existing files."""
    if may_replace:
        return
    for target in targets:
        if target.exists():
            raise CLIError(f"{target} exists; name the output with -o to replace it")


def _print_error(message: str, bar: bool) -> None:
    if bar:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _progress(items: List, enabled: bool, desc: str) -> Iterator:
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit="img", file=sys.stderr)


def _run_jobs(
    jobs: List[Tuple[Path, Path]],
    work: Callable[[Path, Path], str | None],
    folder: bool,
    quiet: bool,
    desc: str,
) -> int:
    """Runs ``work`` on every pair; in folders one bad file does not stop the rest."""
    if folder:
        jobs[0][1].parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    bar = folder and not quiet
    for source, target in _progress(jobs, bar, desc):
        try:
            message = work(source, target)
        except (CLIError, PSICFormatError, ImageLoadError, OSError) as exc:
            if not folder:
                raise
            failures += 1
            message = one_line(exc)
            if str(source) not in message:
                message = f"{source}: {message}"
            _print_error(f"{PROG}: error: {message}", bar)
            continue
        if message and not quiet and not folder:
            print(message)
    if failures:
        raise CLIError(f"{failures} of {len(jobs)} files failed")
    if folder and not quiet:
        print(f"{desc}: {len(jobs)} files written to {jobs[0][1].parent}")
    return EXIT_OK


def _load_image_reporting_warnings(path: Path) -> Tensor:
    from ..io.images import load_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_image(path)
    for warning in caught:
        _warn(" ".join(str(warning.message).split()))
    return x


# ---------------------------------------------------------------- compress


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
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


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
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
        "4096x4096 (compressai_psic.models.guard.MAX_DECODE_PIXELS), 0 for no limit",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar, no summary"
    )


@contextlib.contextmanager
def _pixel_limit(value: Optional[int]) -> Iterator[None]:
    """Applies ``--max-pixels`` for the duration of one command."""
    from ..models import guard as decode_guard

    if value is None:
        yield
        return
    if value < 0:
        raise CLIError(f"--max-pixels must be >= 0 (0: no limit), got {value}")
    previous = decode_guard.MAX_DECODE_PIXELS
    decode_guard.MAX_DECODE_PIXELS = value or None
    try:
        yield
    finally:
        decode_guard.MAX_DECODE_PIXELS = previous


def _add_compress_arguments(parser: argparse.ArgumentParser) -> None:
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
    _add_model_arguments(parser)
    _add_common_arguments(parser)


def _run_compress(args: argparse.Namespace) -> int:
    if args.seed is not None and not 0 <= args.seed < 2**64:
        raise CLIError(f"--seed must be in 0..2**64-1, got {args.seed}")
    if args.seed != 0 and not args.random_init:
        raise CLIError("--seed applies to --random-init weights only")
    _check_device_name(args.device)
    spec = _spec_from_args(args)
    device = _resolve_device(args.device)
    jobs, folder = _jobs(
        args.input,
        args.output,
        lambda p: p.suffix.lower() in IMAGE_EXTENSIONS,
        PSIC_SUFFIX,
        "image",
    )
    models = _ModelCache(device)

    def work(source: Path, target: Path) -> str:
        x = _load_image_reporting_warnings(source)
        height, width = x.shape[-2:]
        if max(height, width) > container.MAX_IMAGE_SIDE:
            raise CLIError(
                f"{source}: {width}x{height} is larger than the format's "
                f"{container.MAX_IMAGE_SIDE}-pixel side limit"
            )
        _check_targets([target], args.output is not None)
        model, sha256 = models.get(spec)
        _check_decodable(model, source, height, width)
        try:
            header = compress_tensor(model, x.to(device), spec, sha256)
        except ValueError as exc:
            if isinstance(exc, PSICFormatError):
                raise
            raise CLIError(f"{source}: {one_line(exc)}") from None
        size = container.write(target, header)
        return (
            f"{source} -> {target}: {size} bytes, {size * 8 / (height * width):.4f} bpp"
        )

    with _pixel_limit(args.max_pixels):
        return _run_jobs(jobs, work, folder, args.quiet, "compress")


def _check_decodable(
    model: torch.nn.Module, source: Path, height: int, width: int
) -> None:
    """Refuses images whose file the decoder would refuse (pixel limit)."""
    from ..models import guard as decode_guard

    limit = decode_guard.MAX_DECODE_PIXELS
    padded = decode_guard.latent_layout(model).image_size(
        decode_guard.expected_shape(model, height, width)
    )
    if limit is not None and padded[0] * padded[1] > limit:
        raise CLIError(
            f"{source}: {width}x{height} pads to {padded[1]}x{padded[0]} = "
            f"{padded[0] * padded[1]} pixels, over the limit of {limit} (raise it "
            "with --max-pixels; decoders refuse files over their own limit)"
        )


# -------------------------------------------------------------- decompress


def _add_decompress_arguments(parser: argparse.ArgumentParser) -> None:
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
    _add_common_arguments(parser)


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


def _run_decompress(args: argparse.Namespace) -> int:
    from ..io.images import save_image

    _check_device_name(args.device)
    device = _resolve_device(args.device)
    jobs, folder = _jobs(
        args.input,
        args.output,
        lambda p: p.suffix.lower() == PSIC_SUFFIX,
        ".png",
        "psic",
    )
    conditions = (
        ["protected", "full"] if args.both else ["full" if args.full else "protected"]
    )
    models = _ModelCache(device)

    def work(source: Path, target: Path) -> str:
        # Default names say which image they hold, so that decoding photo.psic
        # next to photo.png never replaces the original.
        targets = _decoded_targets(target, conditions, args.output is None)
        if targets[0].suffix.lower() not in IMAGE_EXTENSIONS:
            raise CLIError(
                f"{targets[0]}: unknown image suffix; use one of "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            )
        _check_targets(targets, args.output is not None)
        header = container.read(source)
        model, _ = models.get(_spec_from_header(header, args.checkpoint))
        images = decompress_header(model, header, conditions)
        for image, path in zip(images, targets):
            save_image(image.cpu(), path)
        names = ", ".join(
            f"{path} ({condition})" for path, condition in zip(targets, conditions)
        )
        return f"{source} -> {names}: {header.width}x{header.height}"

    with _pixel_limit(args.max_pixels):
        return _run_jobs(jobs, work, folder, args.quiet, "decompress")


# -------------------------------------------------------------------- info


def _add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", help=".psic file(s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def describe_file(path: Path) -> Dict[str, object]:
    """Header fields, sizes and bpp of a ``.psic`` file."""
    header = container.read(path)
    size = path.stat().st_size
    pixels = header.height * header.width
    return {
        "file": str(path),
        "format_version": container.FORMAT_VERSION,
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
        "string_bytes": [len(s) for latent in header.strings for s in latent],
        "file_bytes": size,
        "bpp": size * 8 / pixels,
        "payload_bpp": header.payload_size() * 8 / pixels,
    }


def _run_info(args: argparse.Namespace) -> int:
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


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help line, argument setup and runner.

    ``run`` returns the exit status; it raises :class:`CLIError` (or the package's
    format and image errors) for user errors.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: Subcommands by name, in the order ``psic --help`` lists them.
COMMANDS: Dict[str, Command] = {}


def register_command(command: Command) -> Command:
    """Adds a subcommand to ``psic`` (e.g. ``demo``); returns it."""
    COMMANDS[command.name] = command
    return command


register_command(
    Command(
        "compress",
        "encode images to .psic files",
        _add_compress_arguments,
        _run_compress,
    )
)
register_command(
    Command(
        "decompress",
        "decode .psic files (protected by default, --full, --both)",
        _add_decompress_arguments,
        _run_decompress,
    )
)
register_command(
    Command("info", "print the header of .psic files", _add_info_arguments, _run_info)
)


def _demo_add_arguments(parser: argparse.ArgumentParser) -> None:
    # compressai_psic.demo imports torch: only ``psic demo`` pays for it.
    from .. import demo

    demo.add_arguments(parser)


def _demo_run(args: argparse.Namespace) -> int:
    from .. import demo

    return demo.run(args)


register_command(
    Command(
        "demo",
        "compress generated scenes, decode both paths and ask the demo VLP",
        _demo_add_arguments,
        _demo_run,
    )
)


class _Parser(argparse.ArgumentParser):
    """Reports usage errors in one line, like every other ``psic`` error."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``psic`` argument parser.

    Args:
        command: when given, only that subcommand gets its arguments (the others
            are listed with their help line), so that a command never imports
            what another one needs; by default every subcommand is complete.
    """
    parser = _Parser(
        prog=PROG,
        description="Privacy-shielded image compression (PSIC) for CompressAI models.",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    subparsers.required = True
    for entry in COMMANDS.values():
        sub = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
        if command is None or command == entry.name:
            entry.add_arguments(sub)
        sub.set_defaults(_run=entry.run)
    return parser


def _requested_command(argv: Sequence[str]) -> str:
    """The subcommand named on the command line ("" when there is none)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``psic``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_requested_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_ERROR
    try:
        return int(args._run(args))
    except (CLIError, PSICFormatError, ImageLoadError, OSError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
