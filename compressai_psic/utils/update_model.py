r"""Turns a trained checkpoint into a published model file and manifest entry.

As ``python -m compressai.utils.update_model`` does for CompressAI models, this

1. loads the checkpoint safely (``torch.load(weights_only=True)``; training
   checkpoints ``{"state_dict": …}``, ``module.`` prefixes, CompressAI 1.2.6
   entropy-bottleneck names, plain CompressAI weights and the official PSIC
   layout are accepted, see :func:`compressai_psic.load_checkpoint`);
2. recomputes the CDF tables of the entropy models (``update(force=True)``);
3. saves the state dict alone (no optimiser states, epoch or loss) as
   ``<name>-<sha256[:8]>.pth.tar``: the same checkpoint always gives the same
   bytes and hash (the archive is serialised in memory, so no temporary file
   name ends up inside it), and the file gets the umask's permissions;
4. prints the entry for ``zoo/manifest.json`` (``architecture``, ``quality``
   and ``metric`` when given, ``file``, ``sha256``, ``includes_base``), and with
   ``--manifest`` adds it to that file, replacing the entry of the same zoo point
   (or of the same name) and keeping every other entry.

Example::

    python -m compressai_psic.utils.update_model runs/q3/checkpoint_best_loss.pth.tar \
        -n psic-bmshj2018-hyperprior-mse-3 -d zoo -q 3 -m mse \
        --manifest zoo/manifest.json

From `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

__all__ = ["build_parser", "export_model", "main", "manifest_entry", "same_model"]

METRICS = ("mse", "ms-ssim")


def _strip_suffixes(name: str) -> str:
    """``checkpoint_best_loss.pth.tar`` → ``checkpoint_best_loss``."""
    path = Path(name)
    while path.suffix:
        path = path.with_suffix("")
    return path.name


def export_model(
    filepath: os.PathLike,
    output_dir: os.PathLike,
    name: Optional[str] = None,
    architecture: Optional[str] = None,
    update: bool = True,
) -> Dict[str, Any]:
    """Writes ``<output_dir>/<name>-<sha256[:8]>.pth.tar`` from a checkpoint.

    Returns ``{"path", "sha256", "architecture"}`` of the written file. The
    file is read back with :func:`compressai_psic.load_checkpoint` before
    returning, so a file that would not load is never published.
    """
    from .. import load_checkpoint
    from ..io.files import save_state_dict

    filepath = Path(filepath)
    name = name or _strip_suffixes(filepath.name)
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"Invalid model name {name!r}: a plain file name is needed")
    model = load_checkpoint(filepath, architecture=architecture)
    if update:
        model.update(force=True)
    saved = save_state_dict(model.state_dict(), output_dir, name)
    load_checkpoint(saved["path"], architecture=model.architecture)
    return {**saved, "architecture": model.architecture}


def manifest_entry(
    exported: Dict[str, Any],
    quality: Optional[int] = None,
    metric: Optional[str] = None,
    name: Optional[str] = None,
    file: Optional[str] = None,
) -> Dict[str, Any]:
    """The manifest entry of an exported file (``file`` defaults to its name)."""
    entry: Dict[str, Any] = {"architecture": exported["architecture"]}
    if name is not None:
        entry["name"] = name
    if quality is not None:
        entry["quality"] = quality
    if metric is not None:
        entry["metric"] = metric
    entry["file"] = file if file is not None else Path(exported["path"]).name
    entry["sha256"] = exported["sha256"]
    # The file holds every weight (base and PSIC), not only the trigger part.
    entry["includes_base"] = True
    return entry


def same_model(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Entries for the same zoo point (architecture, quality, metric), or with
    the same name when neither has a quality: the export replaces it."""
    if a.get("quality") is not None or b.get("quality") is not None:
        keys = ("architecture", "quality", "metric")
        return all(a.get(k) == b.get(k) for k in keys)
    return a.get("name") is not None and a.get("name") == b.get("name")


def _relative_file(target: Path, manifest: Path) -> str:
    """The weights path as the manifest's readers resolve it (from its folder)."""
    try:
        relative = os.path.relpath(target.resolve(), manifest.resolve().parent)
    except ValueError:  # another drive on Windows
        return target.resolve().as_posix()
    return Path(relative).as_posix()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compressai_psic.utils.update_model",
        description="Update the CDFs of a trained shielded model, keep only its "
        "state dict, save it as <name>-<sha256[:8]>.pth.tar and print its "
        "manifest entry.",
    )
    parser.add_argument("filepath", type=Path, help="checkpoint to export")
    parser.add_argument(
        "-n",
        "--name",
        help="exported model name (default: the checkpoint file name without suffixes)",
    )
    parser.add_argument(
        "-d", "--dir", type=Path, default=None, help="output folder (default: cwd)"
    )
    parser.add_argument(
        "-a",
        "--architecture",
        default=None,
        help="registered architecture (default: guessed from the weights)",
    )
    parser.add_argument(
        "-q", "--quality", type=int, default=None, help="zoo quality of the entry"
    )
    parser.add_argument(
        "-m", "--metric", choices=METRICS, default=None, help="metric of the entry"
    )
    parser.add_argument(
        "--no-update",
        action="store_true",
        help="do not recompute the CDF tables",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="add the entry to this manifest (e.g. zoo/manifest.json)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Exports the model; returns the manifest entry."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.filepath.is_file():
        parser.error(f"checkpoint not found: {args.filepath}")
    if (args.quality is None) != (args.metric is None):
        parser.error("give --quality and --metric together (a zoo point), or neither")
    if args.quality is not None and not 1 <= args.quality <= 8:
        parser.error(f"--quality must be in 1..8, got {args.quality}")
    if args.manifest is not None and args.manifest.exists():
        if not args.manifest.is_file():
            parser.error(f"--manifest {args.manifest} is not a file")
    from .. import ARCHITECTURES, zoo

    if args.architecture is not None and args.architecture not in ARCHITECTURES:
        parser.error(
            f"unknown architecture {args.architecture!r}: use one of "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )

    try:
        exported = export_model(
            args.filepath,
            args.dir if args.dir is not None else Path.cwd(),
            name=args.name,
            architecture=args.architecture,
            update=not args.no_update,
        )
    except (OSError, RuntimeError, ValueError) as err:
        parser.exit(2, f"update_model: error: {' '.join(str(err).split())}\n")
    top = zoo.MAX_QUALITY.get(exported["architecture"], 8)
    if args.quality is not None and args.quality > top:
        Path(exported["path"]).unlink()
        parser.error(
            f"--quality must be in 1..{top} for {exported['architecture']}, "
            f"got {args.quality}"
        )
    file = None
    if args.manifest is not None:
        file = _relative_file(Path(exported["path"]), args.manifest)
    entry = manifest_entry(
        exported, quality=args.quality, metric=args.metric, name=args.name, file=file
    )
    if args.manifest is not None:
        try:
            zoo.add_manifest_entry(args.manifest, entry, same=same_model)
        except (OSError, ValueError) as err:
            parser.exit(2, f"update_model: error: {' '.join(str(err).split())}\n")
        print(f"update_model: wrote {args.manifest}", file=sys.stderr)
    print(f"update_model: saved {exported['path']}", file=sys.stderr)
    print(json.dumps(entry, indent=2))
    return entry


if __name__ == "__main__":
    main()
